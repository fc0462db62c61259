"""What the routing view's map and finding say for the shipped CapsNet, and how far the finding
holds over many test images (the figures in docs/results.md).

    CAPSVIEWER_DATA=/path/to/data python docs/routing_findings.py [--images 300] [--show 0 1 2]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=300, help="test images surveyed")
    parser.add_argument("--show", type=int, nargs="+", default=[0, 1, 2],
                        help="test images whose map and sentence are printed")
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    args = parser.parse_args()

    from capsviewer.analysis.inspection import inspect_capsnet
    from capsviewer.analysis.routing_findings import (
        describe_strongest, dominance_survey, strongest_part,
    )
    from capsviewer.analysis.routing_maps import all_iterations, map_levels
    from capsviewer.data import load_test_set
    from capsviewer.training import load_checkpoint
    from capsviewer.training.model_files import SHIPPED_MODELS

    torch.set_num_threads(2)
    capsnet = load_checkpoint(SHIPPED_MODELS / "capsnet-mnist.safetensors").model.eval()
    test = load_test_set("mnist", args.data_root)
    for index in args.show:
        capsules = inspect_capsnet(capsnet, test.images[index, 0])
        j = capsules.prediction
        deviation = all_iterations(capsules, "deviation", j)  # c_ij − 1/J, (R, 32, 6, 6)
        last = deviation[-1]
        low, high = map_levels(deviation, "deviation")
        change = np.abs(np.diff(deviation, axis=0)).max(axis=(1, 2, 3))
        print(f"test #{index} (label {int(test.labels[index])}, predicted {j}): c_ij − 1/J at "
              f"r = {len(deviation)} spans {last.min():+.4f} … {last.max():+.4f}, colour scale "
              f"±{high:.4f} (99th percentile), {np.mean(last > 0):.0%} of the parts above "
              f"uniform, {np.mean(np.abs(last) > high):.1%} beyond the scale; the largest change "
              f"per update: {', '.join(f'{c:.4f}' for c in change)}")
        print("   " + describe_strongest(strongest_part(capsules, j), capsules.class_names))
    survey = dominance_survey(capsnet, test.images[:args.images], test.labels[:args.images])
    for field, value in vars(survey).items():
        print(f"{field}: {value:.4g}" if isinstance(value, float) else f"{field}: {value}")


if __name__ == "__main__":
    main()
