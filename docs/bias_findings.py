"""What the learned bias b_j on s_j does in the 10-epoch CapsNet of the routing comparison (the
figures under "The bias b_j after 10 epochs" in docs/routing-comparison.md): for the winning
digit capsule of each of the first test images, how long b_j is against s_j = Σ_i c_ij û_{j|i}
+ b_j and how far it points along s_j, beside the largest single part's support c_ij‖û_{j|i}‖.
Run the comparison's 10-epoch command first (it leaves the checkpoints in --work).

    CAPSVIEWER_DATA=/path/to/data python docs/bias_findings.py [--work runs/routing-comparison-10ep]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("runs/routing-comparison-10ep"))
    parser.add_argument("--images", type=int, default=300, help="first test images")
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    args = parser.parse_args()

    from capsviewer.data import load_test_set
    from capsviewer.training import load_checkpoint
    from capsviewer.data.transforms import to_float

    torch.set_num_threads(2)
    images = to_float(load_test_set("mnist", args.data_root).images[:args.images])
    print("| model | ‖s_j‖ | ‖b_j‖ | ‖b_j‖ / ‖s_j‖ | cos(b_j, s_j) | largest part's c_ij‖û‖ "
          "| Σ_i c_ij‖û‖ |\n|---|---|---|---|---|---|---|")
    for entry in ("dynamic", "dynamic-bias"):
        model = load_checkpoint(args.work / f"{entry}-seed0.safetensors").model.eval()
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
        print(f"| {entry} | {s.norm(dim=1).mean():.3f} | {bias_cells} | "
              f"{support.max(dim=1).values.mean():.3f} | {support.sum(dim=1).mean():.3f} |")
        if model.digit_bias is not None:
            norms = ", ".join(f"{v:.3f}" for v in model.digit_bias.norm(dim=1).tolist())
            print(f"\n‖b_j‖ of the 10 classes (initialised at 0.1 per coordinate: "
                  f"{0.1 * model.digit_bias.shape[1] ** 0.5:.3f}): {norms}\n")


if __name__ == "__main__":
    main()
