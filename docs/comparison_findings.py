"""Findings on the 10-epoch CapsNets of the routing comparison (docs/routing-comparison.md),
measured on the winning digit capsule of each of the first test images:

1. what the learned bias b_j on s_j does ("The bias b_j after 10 epochs"): how long b_j is
   against s_j = Σ_i c_ij û_{j|i} + b_j and how far it points along s_j, beside the largest
   single part's support c_ij‖û_{j|i}‖ (every finished seed of dynamic and dynamic-bias);
2. how the largest part arises ("Why one part dominates"): for every finished run of the
   CapsNet-backbone entries, the part with the largest support, its share of Σ_i c_ij‖û_{j|i}‖,
   its coupling c_ij (1/J = 0.1 is uniform) and its vote's length against the median vote's
   (medians over the images).

Run the comparison's 10-epoch command first (it leaves the checkpoints in --work).

    CAPSVIEWER_DATA=/path/to/data python docs/comparison_findings.py [--work runs/routing-comparison-full]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

ENTRIES = ("dynamic", "dynamic-bias", "uniform", "self-attention", "inverted-attention")


def largest_part(model, images: torch.Tensor) -> dict[str, float]:
    """Medians over images of the largest part's share, coupling and relative vote length."""
    with torch.no_grad():
        out = model(images, intermediates=True)
    rows = torch.arange(len(images))
    winner = out.scores.argmax(dim=1)
    couplings = out.routing.couplings[rows, :, winner]         # (B, I)
    lengths = out.votes[rows, :, winner].norm(dim=-1)           # (B, I)
    support = couplings * lengths
    largest = support.argmax(dim=1)
    return {
        "share": float((support.max(dim=1).values / support.sum(dim=1)).median()),
        "coupling": float(couplings[rows, largest].median()),
        "length": float((lengths[rows, largest] / lengths.median(dim=1).values).median()),
    }


def finished(work: Path, entries):
    """(entry, seed, model) for each finished 10-epoch run of ``entries`` in ``work``."""
    from capsviewer.training import load_checkpoint

    for entry in entries:
        for result in sorted(work.glob(f"{entry}-seed*.json")):  # written when a run ends
            signature = json.loads(result.read_text())["signature"]
            if signature["entry"] == entry and signature["epochs"] == 10:
                model = load_checkpoint(result.with_suffix(".safetensors")).model.eval()
                yield entry, signature["seed"], model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("runs/routing-comparison-full"))
    parser.add_argument("--images", type=int, default=300, help="first test images")
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    args = parser.parse_args()

    from capsviewer.data import load_test_set
    from capsviewer.data.transforms import to_float

    torch.set_num_threads(2)
    images = to_float(load_test_set("mnist", args.data_root).images[:args.images])
    print("| model | seed | ‖s_j‖ | ‖b_j‖ | ‖b_j‖ / ‖s_j‖ | cos(b_j, s_j) | largest part's "
          "c_ij‖û‖ | Σ_i c_ij‖û‖ |\n|---|---|---|---|---|---|---|---|")
    bias_norms = []
    for entry, seed, model in finished(args.work, ("dynamic", "dynamic-bias")):
        with torch.no_grad():
            out = model(images, intermediates=True)
        rows = torch.arange(len(images))
        winner = out.scores.argmax(dim=1)
        couplings, votes = out.routing.couplings, out.votes  # (B, I, J), (B, I, J, D)
        from_votes = torch.einsum("bij,bijd->bjd", couplings, votes)[rows, winner]
        bias = (model.digit_bias[winner] if model.digit_bias is not None
                else torch.zeros_like(from_votes))
        s = from_votes + bias
        cosine = torch.nn.functional.cosine_similarity(bias, s, dim=1)
        support = (couplings * votes.norm(dim=-1))[rows, :, winner]  # (B, I)
        bias_cells = (f"{bias.norm(dim=1).mean():.3f} | "
                      f"{(bias.norm(dim=1) / s.norm(dim=1)).mean():.3f} | {cosine.mean():.3f}"
                      if model.digit_bias is not None else "— | — | —")
        print(f"| {entry} | {seed} | {s.norm(dim=1).mean():.3f} | {bias_cells} | "
              f"{support.max(dim=1).values.mean():.3f} | {support.sum(dim=1).mean():.3f} |")
        if model.digit_bias is not None:
            norms = ", ".join(f"{v:.3f}" for v in model.digit_bias.norm(dim=1).tolist())
            bias_norms.append(f"‖b_j‖ of the 10 classes, seed {seed} (initialised at 0.1 per "
                              f"coordinate: {0.1 * model.digit_bias.shape[1] ** 0.5:.3f}): "
                              f"{norms}")
    print("\n" + "\n\n".join(bias_norms))

    print()
    print("| 10 epochs | seed | largest part's share of the support | its c_ij (uniform 0.1) "
          "| its ‖û‖ / median ‖û‖ |\n|---|---|---|---|---|")
    for entry, seed, model in finished(args.work, ENTRIES):
        found = largest_part(model, images)
        print(f"| {entry} | {seed} | {100 * found['share']:.2f} % | {found['coupling']:.3f} "
              f"| {found['length']:.1f}× |")


if __name__ == "__main__":
    main()
