"""What the routing view's grid can show, as numbers: one value per primary capsule i (on the
32×6×6 grid) for a chosen digit capsule j and iteration r, with a colour scale fitted to them.

Trained couplings stay within a few thousandths of the uniform 1/J, so drawing c_ij on 0…1
shows one flat colour. The default is therefore the deviation from uniform, c_ij − 1/J, on a
scale that is symmetric about 0 and robust: ± the 99th percentile of |c_ij − 1/J| over every
iteration of this input (one scale for all iterations, so stepping shows real change; the few
cells beyond it saturate). "change" shows what the last agreement update moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROBUST_PERCENTILE = 99.0  # cells above it saturate; one dominant part cannot flatten the rest


@dataclass(frozen=True)
class MapMode:
    key: str
    label: str  # what the selector and the title say
    symbol: str  # the colour bar's units (paper notation, rendered by the view)
    diverging: bool  # signed values about 0, on a symmetric scale
    fade: bool  # primary capsules faded by their activity ‖u_i‖
    explanation: str  # one sentence for the tooltip


MAP_MODES = {mode.key: mode for mode in (
    MapMode("deviation", "couplings compared with uniform", "c_ij − 1/J", True, True,
            "Red: part i sends more of its vote to digit capsule j than the uniform 1/J; "
            "blue: less. Faint cells are primary capsules that are barely active (short ‖u_i‖)."),
    MapMode("change", "change since the last iteration", "c_ij⁽ʳ⁾ − c_ij⁽ʳ⁻¹⁾", True, True,
            "What the last agreement update b_ij ← b_ij + û_{j|i}·v_j did to the couplings."),
    MapMode("support", "support c_ij‖û_{j|i}‖", "c_ij‖û_{j|i}‖", False, False,
            "How much each part adds to s_j: its coupling times the length of its vote."),
    MapMode("couplings", "couplings c_ij", "c_ij", False, False,
            "The couplings themselves (softmax over j; 1/J = 0.1 everywhere at iteration 1)."),
    MapMode("logits", "logits b_ij", "b_ij", True, False,
            "The logits the couplings came from: the agreement summed over earlier iterations."),
    MapMode("agreement", "agreement û_{j|i}·v_j", "û_{j|i}·v_j", True, False,
            "How well each vote agrees with the output v_j; added to b_ij for the next iteration."),
)}
DEFAULT_MODE = "deviation"


def _field(snapshot, name: str) -> np.ndarray:
    return getattr(snapshot, name)


def all_iterations(inspection, mode: str, digit: int) -> np.ndarray:
    """The mode's values for digit capsule j at every iteration: (R, maps, rows, cols)."""
    steps = inspection.iterations
    if mode == "deviation":
        couplings = np.stack([s.couplings[..., digit] for s in steps])
        return couplings - 1.0 / steps[0].couplings.shape[-1]
    if mode == "change":
        couplings = np.stack([s.couplings[..., digit] for s in steps])
        return np.concatenate([np.zeros_like(couplings[:1]), np.diff(couplings, axis=0)])
    if mode == "support":
        return np.stack([inspection.contributions(digit, r) for r in range(len(steps))])
    if mode in ("couplings", "logits", "agreement"):
        return np.stack([_field(s, mode)[..., digit] for s in steps])
    raise ValueError(f"unknown map {mode!r}; one of {', '.join(MAP_MODES)}")


def map_levels(values: np.ndarray, mode: str) -> tuple[float, float]:
    """The colour scale for ``values`` (every iteration of one digit capsule): ±robust bound
    for signed modes, 0…robust top for the others (c_ij: 0…max, where saturation would hide
    the one value that matters)."""
    magnitudes = np.abs(values[np.isfinite(values)])
    if mode == "couplings":
        top = float(magnitudes.max()) if magnitudes.size else 0.0
    else:
        top = float(np.percentile(magnitudes, ROBUST_PERCENTILE)) if magnitudes.size else 0.0
    top = top if top > 0 else 1e-6  # all zero (b_ij or the change at r = 1): one colour
    return (-top, top) if MAP_MODES[mode].diverging else (0.0, top)


def activity_weights(primary_lengths: np.ndarray) -> np.ndarray:
    """How opaque each primary capsule is drawn when faded by activity: ‖u_i‖ / max ‖u‖."""
    peak = float(primary_lengths.max()) if primary_lengths.size else 0.0
    return primary_lengths / peak if peak > 0 else np.ones_like(primary_lengths)


def rendered_spread(pixels: np.ndarray, low: float = 5.0, high: float = 95.0) -> float:
    """How much a rendered picture varies: the largest spread, over its red, green and blue
    channels (0…255), between the ``low`` and ``high`` percentiles of the pixels given (N, 3
    or 4) or (H, W, 3 or 4). A map of one flat colour scores about 0."""
    rgb = np.asarray(pixels, dtype=np.float64).reshape(-1, np.shape(pixels)[-1])[:, :3]
    spread = np.percentile(rgb, high, axis=0) - np.percentile(rgb, low, axis=0)
    return float(spread.max())
