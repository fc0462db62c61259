"""What ships inside the package: the trained models, the icon and style sheet, sample images
and a 1,000-image sample of the MNIST test set (see README.md here for sources and licences).

Found with :mod:`importlib.resources`, never by paths relative to a checkout, so an editable
install and a plain one (a wheel) find the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """A file or folder shipped in ``capsviewer/resources``, as a path on disk."""
    found = files(__name__).joinpath(*parts)
    if not isinstance(found, Path):  # a zipped install: capsviewer needs its files on disk
        raise FileNotFoundError(f"capsviewer's {'/'.join(parts)} is not a file on disk ({found})")
    return found
