"""What the shipped EM model's routing does on real digits (the figures in docs/em-routing.md):
how far EM moves R_ij from uniform, how much of all the activation goes to the winning class
and how much of that from capsules that see no ink, over many test images; and test accuracy
against the number of EM iterations.

    CAPSVIEWER_DATA=/path/to/data python docs/em_findings.py [--images 300] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=300, help="test images surveyed")
    parser.add_argument("--model", type=Path, help="default: the shipped em-capsnet")
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="EM iterations to measure test accuracy at (all test images)")
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    args = parser.parse_args()

    from capsviewer.analysis.em_inspection import BLANK_INK, inspect_em
    from capsviewer.data import load_test_set
    from capsviewer.training import evaluate, load_checkpoint
    from capsviewer.training.model_files import SHIPPED_MODELS

    torch.set_num_threads(2)
    model = load_checkpoint(args.model or SHIPPED_MODELS / "em-capsnet-mnist.safetensors").model
    model.eval()
    test = load_test_set("mnist", args.data_root)
    own = model.config.routing_iterations
    rows = {t: [] for t in range(own)}
    blank = []  # per image: the share of receptive fields that see no ink
    for index in range(args.images):
        em = inspect_em(model, test.images[index, 0])
        j = em.prediction
        total = float(em.child_activations.sum())
        for t in range(own):
            rows[t].append((em.entropy(t), em.mass(t)[j] / total, em.blank_share(j, t),
                            float(np.exp(np.log(em.steps[t].sigma[j]).mean())),
                            float(np.exp(np.log(np.delete(em.steps[t].sigma, j, 0)).mean())),
                            em.steps[t].activations[j],
                            float(np.delete(em.steps[t].activations, j).mean())))
        blank.append(np.mean([[em.image[a:c, b:d].mean() < BLANK_INK for a, b, c, d in row]
                              for row in em.receptive_fields]))
    print(f"{args.images} test images; receptive fields (of the 5×5 grid) that see no ink: "
          f"{np.mean(blank):.1%} on average\n")
    print("| iteration t | R entropy / log J | winner's share of all activation | of it from "
          "blank fields | σ_j winner | σ_j others | a_j winner | a_j others |")
    print("|---|---|---|---|---|---|---|---|")
    for t, values in rows.items():
        v = np.asarray(values).mean(axis=0)
        print(f"| {t + 1} | {v[0]:.3f} | {v[1]:.1%} | {v[2]:.1%} | {v[3]:.3f} | {v[4]:.3f} "
              f"| {v[5]:.3f} | {v[6]:.3f} |")
    print("\n| EM iterations | test accuracy (10,000 images) |\n|---|---|")
    for iterations in args.iterations:
        result = evaluate(model, test, "cpu", 500, iterations=iterations)
        print(f"| {iterations}{' (trained)' if iterations == own else ''} "
              f"| {result.accuracy:.2%} |")


if __name__ == "__main__":
    main()
