"""Everything the views show about one input, computed in one pass and handed over as numpy.

``inspect_capsnet`` runs the CapsNet with a full routing trace; ``inspect_cnn`` the baseline.
Shapes use the primary grid (maps, rows, cols) = (32, 6, 6) and J = 10 digit capsules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from capsviewer.data.transforms import as_batch, model_device, to_float
from capsviewer.models import BaselineCNN, CapsNet

MNIST_CLASSES = tuple(str(k) for k in range(10))


def spread_over_fields(cells: np.ndarray, fields: np.ndarray, shape) -> np.ndarray:
    """An image of ``shape`` from values per grid cell (rows, cols): each spread uniformly over
    its receptive field (``fields`` (rows, cols, 4): top, left, bottom, right), overlaps
    averaged, scaled to a maximum of 1."""
    heat = np.zeros(shape, dtype=np.float64)
    weight = np.zeros_like(heat)
    for (row, col), value in np.ndenumerate(cells):
        top, left, bottom, right = fields[row, col]
        heat[top:bottom, left:right] += value
        weight[top:bottom, left:right] += 1
    heat = np.divide(heat, weight, out=np.zeros_like(heat), where=weight > 0)
    peak = heat.max()
    return (heat / peak if peak > 0 else heat).astype(np.float32)


@dataclass(frozen=True)
class IterationSnapshot:
    """One routing iteration r, on the primary grid, in dynamic routing's names (the trace's
    fields; what they are for another routing: capsviewer.analysis.routing_maps.ROUTING_TERMS)."""

    logits: np.ndarray  # b_ij the couplings came from (32, 6, 6, 10)
    couplings: np.ndarray  # c_ij = softmax_j b_ij (32, 6, 6, 10); Σ_j = 1 (the assignments)
    agreement: np.ndarray  # û_{j|i}·v_j (32, 6, 6, 10), added to b_ij for iteration r+1
    parent_lengths: np.ndarray  # the class scores ‖v_j‖ (the read-out for inverted attention) (10,)
    parent_poses: np.ndarray  # v_j (10, 16)


@dataclass(frozen=True)
class CapsuleInspection:
    image: np.ndarray  # (28, 28) float32 in [0, 1]: what the model saw
    lengths: np.ndarray  # ‖v_j‖ after the last iteration (10,)
    poses: np.ndarray  # v_j (10, 16)
    prediction: int
    reconstruction: np.ndarray  # decoder output masked by the prediction (28, 28)
    primary_lengths: np.ndarray  # ‖u_i‖ (32, 6, 6)
    vote_lengths: np.ndarray  # ‖û_{j|i}‖ (32, 6, 6, 10)
    iterations: tuple[IterationSnapshot, ...]
    receptive_fields: np.ndarray  # (6, 6, 4) input box (top, left, bottom, right) per grid cell
    class_names: tuple[str, ...] = MNIST_CLASSES
    votes: np.ndarray | None = None  # û_{j|i} (32, 6, 6, 10, 16), for vote clouds and decoding
    routing: str = "dynamic"  # the model's routing (CapsNetConfig.routing): what c_ij are

    def contributions(self, digit: int, iteration: int = -1) -> np.ndarray:
        """c_ij‖û_{j|i}‖ on the grid (32, 6, 6): how much each part adds to s_j at ``iteration``."""
        return self.iterations[iteration].couplings[..., digit] * self.vote_lengths[..., digit]

    def part_map(self, digit: int, iteration: int = -1) -> np.ndarray:
        """(28, 28) map of where digit capsule j's support comes from: each grid cell's summed
        contribution spread uniformly over its receptive field, scaled to a maximum of 1."""
        cells = self.contributions(digit, iteration).sum(axis=0)
        return spread_over_fields(cells, self.receptive_fields, self.image.shape)

    def strongest_parts(self, digit: int, count: int = 5, iteration: int = -1):
        """The ``count`` primary capsules contributing most to digit j: (map, row, col, value)."""
        values = self.contributions(digit, iteration)
        order = np.argsort(values, axis=None)[::-1][:count]
        return [(*map(int, np.unravel_index(k, values.shape)), float(values.flat[k])) for k in order]


@dataclass(frozen=True)
class CNNInspection:
    probabilities: np.ndarray  # softmax (10,)
    prediction: int
    class_names: tuple[str, ...] = MNIST_CLASSES


@torch.no_grad()
def inspect_capsnet(model: CapsNet, image, iterations: int | None = None,
                    class_names: tuple[str, ...] = MNIST_CLASSES) -> CapsuleInspection:
    model.eval()
    x = as_batch(image, model_device(model))
    out = model(x, iterations=iterations, trace=True)
    grid = model.config.as_primary_grid

    def on_grid(t: torch.Tensor) -> np.ndarray:
        return grid(t[0].float(), 0).cpu().numpy()

    snapshots = tuple(
        IterationSnapshot(
            logits=on_grid(step.logits),
            couplings=on_grid(step.couplings),
            agreement=on_grid(step.agreement),
            parent_lengths=model.class_scores(step.outputs)[0].cpu().numpy(),
            parent_poses=step.outputs[0].cpu().numpy(),
        )
        for step in out.routing.trace
    )
    _, rows, cols = model.config.primary_grid
    fields = np.array([[model.receptive_field(r, c) for c in range(cols)] for r in range(rows)])
    return CapsuleInspection(
        image=x[0, 0].cpu().numpy(),
        lengths=out.scores[0].cpu().numpy(),
        poses=out.digit_capsules[0].cpu().numpy(),
        prediction=int(out.scores[0].argmax()),
        reconstruction=out.reconstruction[0, 0].cpu().numpy(),
        primary_lengths=on_grid(out.primary_capsules.norm(dim=-1)),
        vote_lengths=on_grid(out.votes.norm(dim=-1)),
        iterations=snapshots,
        receptive_fields=fields,
        class_names=class_names,
        votes=on_grid(out.votes),
        routing=model.config.routing,
    )


@torch.no_grad()
def inspect_cnn(model: BaselineCNN, image,
                class_names: tuple[str, ...] = MNIST_CLASSES) -> CNNInspection:
    model.eval()
    probabilities = model(as_batch(image, model_device(model))).scores[0].cpu().numpy()
    return CNNInspection(probabilities, int(probabilities.argmax()), class_names)


@torch.no_grad()
def predict_all(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500,
                should_stop=lambda: False, progress=None) -> np.ndarray | None:
    """Predicted class of every image (N, 1, 28, 28) uint8; None when stopped early.
    ``progress(done, total)`` is called after each batch."""
    model.eval()
    device = model_device(model)
    predictions = []
    for start in range(0, len(images), batch_size):
        if should_stop():
            return None
        x = to_float(images[start:start + batch_size].to(device))
        predictions.append(model(x).scores.argmax(1).cpu())
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    return torch.cat(predictions).numpy()


def cached_predictions(model: torch.nn.Module, images: torch.Tensor, key: str,
                       cache_dir: Path, batch_size: int = 100,
                       should_stop=lambda: False, progress=None) -> np.ndarray | None:
    """``predict_all`` remembered on disk under ``key`` (say, hashes of the checkpoint file and
    the data set): a second launch gets the predictions at once. A damaged entry is recomputed."""
    path = Path(cache_dir) / f"{key}.npy"
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(images),):
            return cached
    except (OSError, ValueError):
        pass
    predicted = predict_all(model, images, batch_size, should_stop, progress)
    if predicted is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp.npy")
        np.save(partial, predicted.astype(np.int64))
        partial.replace(path)
    return predicted


__all__ = ["cached_predictions", "CNNInspection", "CapsuleInspection", "IterationSnapshot", "MNIST_CLASSES",
           "inspect_capsnet", "inspect_cnn", "predict_all"]
