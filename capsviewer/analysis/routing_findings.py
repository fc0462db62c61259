"""Findings measured from the routing of one input, in words the routing view shows.

The support of primary capsule i for digit capsule j is c_ij‖û_{j|i}‖, what i adds to the
length of s_j = Σ_i c_ij û_{j|i}. :func:`strongest_part` finds the part with the most
support, its share, how long its vote is against the median vote, how far routing raised its
coupling above uniform, whether it points where s_j points, and where it sits;
:func:`describe_strongest` says so in a sentence. Nothing is assumed about the model: a
CapsNet whose support is spread evenly gets a sentence saying so.

:func:`dominance_survey` measures the same over many test images (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from capsviewer.data.transforms import model_device, to_float

DOMINANT_SHARE = 0.10  # one part of 1,152 carrying a tenth of the support (115× an even share)
ALIGNED = 0.9  # cos(c_ij û_{j|i}, s_j) above this: the part points where s_j points
RAISED = 1.5  # c_ij at least this many times 1/J: routing raised the part's coupling
BLANK_INK = 0.02  # mean pixel value in the receptive field below this: the part sees no ink


@dataclass(frozen=True)
class StrongestPart:
    """The primary capsule with the most support for digit capsule j at one iteration."""

    digit: int
    iteration: int  # r, 1-based
    grid_map: int
    row: int
    col: int
    support: float  # c_ij‖û_{j|i}‖
    share: float  # of Σ_i c_ij‖û_{j|i}‖
    coupling: float  # c_ij
    uniform: float  # 1/J, every coupling before routing (and always without it)
    vote_ratio: float  # ‖û_{j|i}‖ / the median ‖û_{j|i'}‖ over all parts i'
    alignment: float | None  # cos(c_ij û_{j|i}, s_j); None without the votes
    field: tuple[int, int, int, int]  # receptive field on the input (top, left, bottom, right)
    ink: float  # mean pixel value (0…1) of the input inside the field
    grid_shape: tuple[int, int, int]  # (maps, rows, cols)
    top_ten_share: float  # of the ten strongest parts together

    @property
    def dominant(self) -> bool:
        return self.share >= DOMINANT_SHARE

    @property
    def blank(self) -> bool:
        return self.ink < BLANK_INK

    @property
    def name(self) -> str:
        return f"map {self.grid_map}, row {self.row}, col {self.col}"


def strongest_part(inspection, digit: int, iteration: int = -1) -> StrongestPart:
    """Measure the strongest part of ``inspection`` (a CapsuleInspection) for digit capsule
    ``digit`` at ``iteration`` (0-based; −1: the last)."""
    count = len(inspection.iterations)
    r = iteration % count
    support = inspection.contributions(digit, r)
    flat = support.reshape(-1)
    order = np.argsort(flat)[::-1]
    best = int(order[0])
    grid_map, row, col = (int(v) for v in np.unravel_index(best, support.shape))
    total = float(flat.sum())
    vote_lengths = inspection.vote_lengths[..., digit]
    median_vote = float(np.median(vote_lengths))
    coupling = float(inspection.iterations[r].couplings[grid_map, row, col, digit])
    alignment = None
    if inspection.votes is not None:
        votes = inspection.votes[..., digit, :]  # û_{j|i} (maps, rows, cols, D)
        couplings = inspection.iterations[r].couplings[..., digit, None]
        s = (couplings * votes).reshape(-1, votes.shape[-1]).sum(axis=0)
        part = coupling * votes[grid_map, row, col]
        norms = float(np.linalg.norm(s) * np.linalg.norm(part))
        alignment = float(s @ part / norms) if norms > 0 else None
    top, left, bottom, right = (int(v) for v in inspection.receptive_fields[row, col])
    ink = float(np.asarray(inspection.image)[top:bottom, left:right].mean())
    return StrongestPart(
        digit=int(digit), iteration=r + 1, grid_map=grid_map, row=row, col=col,
        support=float(flat[best]), share=float(flat[best] / total) if total > 0 else 0.0,
        coupling=coupling, uniform=1.0 / inspection.iterations[r].couplings.shape[-1],
        vote_ratio=float(vote_lengths[grid_map, row, col] / median_vote) if median_vote > 0
        else float("inf"),
        alignment=alignment, field=(top, left, bottom, right), ink=ink,
        grid_shape=tuple(int(v) for v in support.shape),
        top_ten_share=float(flat[order[:10]].sum() / total) if total > 0 else 0.0,
    )


def grid_place(row: int, col: int, rows: int, cols: int) -> str:
    """Where a cell sits on the primary grid, in words: "the bottom row", "the top-left corner",
    "the middle"."""
    vertical = "top" if row == 0 else "bottom" if row == rows - 1 else None
    horizontal = "left" if col == 0 else "right" if col == cols - 1 else None
    if vertical and horizontal:
        return f"the {vertical}-{horizontal} corner"
    if vertical:
        return f"the {vertical} row"
    if horizontal:
        return f"the {horizontal} column"
    return "the middle"


def describe_strongest(part: StrongestPart, class_names=None, weight: str = "c") -> str:
    """The finding in plain words (one or two sentences), from the numbers measured;
    ``weight``: the routing's symbol for its weights (r for inverted attention's r_ij)."""
    name = str(class_names[part.digit]) if class_names is not None else str(part.digit)
    maps, rows, cols = part.grid_shape
    top, left, bottom, right = part.field
    where = (f"in {grid_place(part.row, part.col, rows, cols)} of the {rows}×{cols} grid "
             f"(image rows {top}–{bottom - 1}, columns {left}–{right - 1})")
    if not part.dominant:
        return (f"No single part dominates capsule {name}: the strongest, {part.name}, "
                f"carries {part.share:.0%} of its support {weight}·‖û‖ and the ten strongest "
                f"{part.top_ten_share:.0%} together.")
    clauses = [f"its vote is {part.vote_ratio:.0f}× as long as the median vote"]
    if part.coupling >= RAISED * part.uniform:
        clauses.append(f"routing raised its {weight} from the uniform {part.uniform:.2f} to "
                       f"{part.coupling:.2f}")
    if part.alignment is not None and part.alignment >= ALIGNED:
        clauses.append(f"it points where s_{name} points (cos {part.alignment:.2f}), so it "
                       f"largely sets {name}'s pose")
    joined = (clauses[0] if len(clauses) == 1 else
              ", ".join(clauses[:-1]) + (", and " if len(clauses) > 2 else " and ") + clauses[-1])
    text = (f"One part carries {part.share:.0%} of capsule {name}'s support {weight}·‖û‖: "
            f"primary capsule {part.name}, {where}. {joined[0].upper()}{joined[1:]}.")
    if part.blank:
        text += (" Its field is blank here: it pushes the same way whatever is drawn, like a "
                 "bias the network made itself.")
    return text


# -- over many images ----------------------------------------------------------------------

@dataclass(frozen=True)
class DominanceSurvey:
    """How often one primary capsule is the strongest part of the winning digit capsule."""

    images: int
    iterations: int
    most_common: tuple[int, int, int]  # (map, row, col) strongest on the most images
    most_common_images: int  # on how many of them it is the strongest
    median_share: float  # its share of the winner's support, median over the images
    median_coupling: float  # its c_ij to the winner
    mean_vote_length: float  # its ‖û_{j|i}‖ averaged over images and all j
    mean_vote_length_winner: float  # … to the winning j only
    median_vote_length: float  # of every vote of every image
    median_alignment: float  # cos(c_ij û_{j|i}, s_j) for the winner
    saturated: float  # share of primary capsules with ‖u_i‖ > 0.9
    field: tuple[int, int, int, int]  # its receptive field
    field_ink: float  # mean pixel value inside its field over the images
    image_ink: float  # mean pixel value of the whole images
    direction_consistency: float  # ‖mean of u_i/‖u_i‖‖ over images (1: the same every time)
    median_consistency: float  # the same, median over all primary capsules
    accuracy: float  # of the images' labels, as routed
    accuracy_without: float  # with the part's votes set to zero
    winner_length: float  # median ‖v_j‖ of the winner
    winner_length_without: float  # … with the part's votes set to zero


def _batches(model, images, iterations, batch_size):
    device = model_device(model)
    for start in range(0, len(images), batch_size):
        x = to_float(torch.as_tensor(images[start:start + batch_size]).to(device))
        yield x, model(x, iterations=iterations, trace=True)


@torch.no_grad()
def dominance_survey(model, images, labels, iterations: int | None = None,
                     batch_size: int = 100) -> DominanceSurvey:
    """Route ``images`` (N, 1, H, W) through CapsNet ``model`` and measure the strongest part
    of each image's winning capsule (see :class:`DominanceSurvey`). Two passes: the first
    finds the part, the second measures it and routes again without its votes."""
    model.eval()
    iterations = model.config.routing_iterations if iterations is None else iterations
    tops, lengths, consistency, saturated, count = [], [], 0.0, [], 0
    for x, out in _batches(model, images, iterations, batch_size):
        rows, winner = torch.arange(len(x)), out.scores.argmax(1)
        support = out.routing.trace[-1].couplings[rows, :, winner] \
            * out.votes.norm(dim=-1)[rows, :, winner]
        tops.append(support.argmax(1).cpu())
        lengths.append(out.votes.norm(dim=-1).flatten().cpu())
        u = out.primary_capsules
        consistency = consistency + (u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)).sum(0)
        saturated.append((u.norm(dim=-1) > 0.9).float().flatten().cpu())
        count += len(x)
    tops = torch.cat(tops)
    i = int(torch.bincount(tops).argmax())
    consistency = (consistency / count).norm(dim=-1).cpu()  # (I,) 1: the same direction always

    measured = {key: [] for key in ("share", "coupling", "vote", "vote_all", "alignment",
                                    "winner", "length", "length_without", "correct_without")}
    for x, out in _batches(model, images, iterations, batch_size):
        rows, winner = torch.arange(len(x)), out.scores.argmax(1)
        couplings = out.routing.trace[-1].couplings[rows, :, winner]  # (B, I)
        votes = out.votes[rows, :, winner]  # (B, I, D)
        support = couplings * votes.norm(dim=-1)
        part = couplings[:, i, None] * votes[:, i]
        s = (couplings[..., None] * votes).sum(1)
        without = out.votes.clone()
        without[:, i] = 0
        routed = model.route(without, iterations).outputs.norm(dim=-1)
        for key, value in (("share", support[:, i] / support.sum(1)),
                           ("coupling", couplings[:, i]), ("vote", votes[:, i].norm(dim=-1)),
                           ("vote_all", out.votes[:, i].norm(dim=-1).flatten()),
                           ("alignment", torch.nn.functional.cosine_similarity(part, s, dim=-1)),
                           ("winner", winner), ("length", out.scores[rows, winner]),
                           ("length_without", routed[rows, winner]),
                           ("correct_without", routed.argmax(1))):
            measured[key].append(value.cpu())
    got = {key: torch.cat(values) for key, values in measured.items()}
    labels = torch.as_tensor(labels[:count]).cpu()
    position = tuple(int(v) for v in np.unravel_index(i, model.config.primary_grid))
    top, left, bottom, right = field = tuple(int(v) for v in
                                             model.receptive_field(position[1], position[2]))
    pixels = to_float(torch.as_tensor(images[:count]))[:, 0]
    return DominanceSurvey(
        images=count, iterations=iterations, most_common=position,
        most_common_images=int((tops == i).sum()),
        median_share=float(got["share"].median()),
        median_coupling=float(got["coupling"].median()),
        mean_vote_length=float(got["vote_all"].mean()),
        mean_vote_length_winner=float(got["vote"].mean()),
        median_vote_length=float(torch.cat(lengths).median()),
        median_alignment=float(got["alignment"].median()),
        saturated=float(torch.cat(saturated).mean()),
        field=field,
        field_ink=float(pixels[:, top:bottom, left:right].mean()),
        image_ink=float(pixels.mean()),
        direction_consistency=float(consistency[i]),
        median_consistency=float(consistency.median()),
        accuracy=float((got["winner"] == labels).float().mean()),
        accuracy_without=float((got["correct_without"] == labels).float().mean()),
        winner_length=float(got["length"].median()),
        winner_length_without=float(got["length_without"].median()),
    )
