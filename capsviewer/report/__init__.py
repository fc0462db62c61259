"""Writers of the robustness report: its Markdown (``text``) and its figure (``figure``).
The numbers are computed in :mod:`capsviewer.analysis.robustness`; nothing here imports Qt."""
