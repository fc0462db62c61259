"""What the routing view's grid can show, as numbers: one value per primary capsule i (on the
32×6×6 grid) for a chosen digit capsule j and iteration r, with a colour scale fitted to them.

Trained couplings stay within a few thousandths of the uniform 1/J, so drawing c_ij on 0…1
shows one flat colour. The default is therefore the deviation from uniform, c_ij − 1/J, on a
scale that is symmetric about 0 and robust: ± the 99th percentile of |c_ij − 1/J| over every
iteration of this input (one scale for all iterations, so stepping shows real change; the few
cells beyond it saturate). "change" shows what the last agreement update moved.
Each vector routing names its weights and what they come from (:data:`ROUTING_TERMS`), and
offers only the maps it has (:func:`map_modes`): no logits for uniform couplings, no change
for the one-pass algorithms.
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
    hint: str = ""  # one line under the grid: how to read the colours


@dataclass(frozen=True)
class RoutingTerms:
    """What one vector routing's assignment weights and the quantities they come from are
    called (the paper's symbols), for titles, legends and tooltips."""

    noun: str  # of the weights: "couplings", "self-attention weights", "routing weights"
    symbol: str  # of the weights: c_ij or r_ij
    parent: str  # the parents' poses: v_j, or p_j (inverted attention)
    scores: str  # what the class bars show: ‖v_j‖, or the read-out's softmax
    weights_explanation: str
    change: str = ""  # what one iteration does to the weights; "": one pass, no "change" map
    logits: tuple[str, str, str] | None = None  # (label, symbol, explanation); None: no map
    agreement: tuple[str, str, str] | None = None
    default: str = "deviation"
    summary: str = ""  # one line for the tab: what this routing is

    @property
    def weights(self) -> str:
        """"couplings c_ij", "routing weights r_ij", …"""
        return f"{self.noun} {self.symbol}"


ROUTING_TERMS = {
    "dynamic": RoutingTerms(
        "couplings", "c_ij", "v_j", "‖v_j‖",
        "The couplings themselves (softmax over j; 1/J = 0.1 everywhere at iteration 1).",
        change="What the last agreement update b_ij ← b_ij + û_{j|i}·v_j did to the couplings.",
        logits=("logits b_ij", "b_ij", "The logits the couplings came from: the agreement "
                "summed over earlier iterations."),
        agreement=("agreement û_{j|i}·v_j", "û_{j|i}·v_j", "How well each vote agrees with "
                   "the output v_j; added to b_ij for the next iteration."),
        summary="c_ij = softmax_j(b_ij), b_ij grows by the agreement û_{j|i}·v_j each "
                "iteration"),
    "uniform": RoutingTerms(
        "couplings", "c_ij", "v_j", "‖v_j‖",
        "No routing: every part sends 1/J of its vote to each digit capsule, whatever the "
        "votes; s_j = Σ_i û_{j|i} / J.",
        default="couplings",
        summary="no routing: c_ij = 1/J for every part, one pass, nothing to step through"),
    "self-attention": RoutingTerms(
        "self-attention weights", "c_ij", "v_j", "‖v_j‖",
        "Efficient-CapsNet's weights from one pass of self-attention: c_ij = softmax_j(b_ij), "
        "b_ij = û_{j|i}·Σ_k û_{j|k} / √D. s_j = Σ_i (c_ij + β_ij) û_{j|i} also adds the "
        "learned priors β_ij, which this map does not include.",
        logits=("attention logits b_ij", "b_ij", "b_ij = û_{j|i}·Σ_k û_{j|k} / √D: how well "
                "part i's vote agrees with the sum of every vote for j (no iterations)."),
        summary="one pass, no iterations: weights from how well each vote agrees with the sum "
                "of the votes for j"),
    "inverted-attention": RoutingTerms(
        "routing weights", "r_ij", "p_j", "class score softmax_j(w·p_j + c)",
        "Tsai et al.'s routing weights: r_ij = softmax_j(a_ij), a_ij = p_j·û_{j|i} from the "
        "previous poses (p_j = 0 at iteration 1, so r_ij = 1/J there).",
        change="What the last iteration's poses p_j = LayerNorm(s_j) did to the routing "
               "weights (a_ij recomputed, not accumulated).",
        logits=("agreement a_ij from the previous poses", "a_ij", "a_ij = p_j·û_{j|i} with "
                "the poses of the previous iteration (0 at iteration 1): r_ij = softmax_j(a_ij)."),
        agreement=("agreement p_j·û_{j|i}", "p_j·û_{j|i}", "How well each vote agrees with "
                   "this iteration's pose p_j: the next iteration's a_ij."),
        summary="parents compete for each part: r_ij = softmax_j(p_j·û_{j|i}), recomputed "
                "from the poses each iteration"),
}


def map_modes(routing: str = "dynamic") -> dict[str, MapMode]:
    """What the grid can show for routing ``routing`` (one of ROUTING_TERMS): the weights
    compared with uniform, their change per iteration (iterative routings), each part's
    support, the weights, and the logits and agreement they come from where it has them."""
    t = ROUTING_TERMS[routing]
    w, uniform = t.symbol, routing == "uniform"
    modes = [
        MapMode("deviation", f"{t.weights} compared with uniform", f"{w} − 1/J", True, True,
                f"Red: part i sends more of its vote to digit capsule j than the uniform 1/J; "
                f"blue: less ({w}). Faint cells are primary capsules that are barely active "
                "(short ‖u_i‖).",
                "red: more than 1/J · blue: less · faint: inactive part (short ‖u_i‖)"),
        MapMode("change", "change since the last iteration", f"{w}⁽ʳ⁾ − {w}⁽ʳ⁻¹⁾", True, True,
                t.change, "red: rose in the last iteration · blue: fell · faint: inactive part")
        if t.change else None,
        MapMode("support", f"support {w}‖û_{{j|i}}‖", f"{w}‖û_{{j|i}}‖", False, False,
                f"How much each part adds to s_j: its weight {w} times the length of its vote.",
                "bright: adds most to s_j"),
        MapMode("couplings", t.weights + (" = 1/J (no routing)" if uniform else ""), w, False,
                False, t.weights_explanation,
                f"{w} = 1/J = 0.1 for every part: nothing is routed" if uniform
                else f"{w}: 1/J = 0.1 is uniform"),
        signed("logits", t.logits, "red: above 0 · blue: below"),
        signed("agreement", t.agreement, f"red: agrees with {t.parent} · blue: opposes"),
    ]
    return {mode.key: mode for mode in modes if mode is not None}


def signed(key: str, terms: tuple[str, str, str] | None, hint: str) -> MapMode | None:
    """A map of signed values named by (label, symbol, explanation); None without terms."""
    if terms is None:
        return None
    label, symbol, explanation = terms
    return MapMode(key, label, symbol, True, False, explanation, hint)


MAP_MODES = map_modes("dynamic")  # every map (dynamic routing has them all)
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
