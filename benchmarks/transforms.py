"""capsviewer.data.transforms against torchvision.transforms.v2.functional, on one batch.

    python benchmarks/transforms.py [--images 500]

torchvision's functions take one set of parameters per call, so per-image shifts, angles and
affine transforms are a loop over the batch there; one angle for the whole batch is one call.
Prints the best of several runs of each (ms) and the import time of v2.functional; the
figures quoted in capsviewer/data/transforms.py come from this script.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capsviewer.data.transforms import (  # noqa: E402
    affine_images,
    rotate_images,
    shift_images,
    to_float,
)


def best_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    start = time.perf_counter()
    import torchvision.transforms.v2.functional as TF

    imported = time.perf_counter() - start
    g = torch.Generator().manual_seed(0)
    n = args.images
    pixels = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    x = to_float(pixels)
    angles = torch.linspace(-180, 175, n)
    shifts = torch.randint(-2, 3, (2, n), generator=g)
    shear = torch.linspace(-15, 15, n)
    scale = torch.linspace(0.8, 1.2, n)
    translation = torch.rand(n, 2, generator=g) * 4 - 2
    bilinear = TF.InterpolationMode.BILINEAR
    r = args.repeats
    rows = [
        ("uint8 → float", best_ms(lambda: to_float(pixels), r),
         best_ms(lambda: TF.to_dtype(pixels, torch.float32, scale=True), r)),
        ("integer shift per image", best_ms(lambda: shift_images(x, shifts, 2), r),
         best_ms(lambda: torch.stack([TF.affine(x[i], angle=0.0, translate=[int(shifts[1, i]),
                                                                            int(shifts[0, i])],
                                                scale=1.0, shear=[0.0, 0.0]) for i in range(n)]),
                 max(1, r // 3))),
        ("rotation, one angle per image", best_ms(lambda: rotate_images(x[:, 0], angles), r),
         best_ms(lambda: torch.stack([TF.rotate(x[i], float(angles[i]), interpolation=bilinear)
                                      for i in range(n)]), max(1, r // 3))),
        ("rotation, one angle for all", best_ms(lambda: rotate_images(x[:, 0], [30.0]), r),
         best_ms(lambda: TF.rotate(x, 30.0, interpolation=bilinear), r)),
        ("affine per image", best_ms(lambda: affine_images(x, angles, shear, scale, translation), r),
         best_ms(lambda: torch.stack([
             TF.affine(x[i], angle=float(angles[i]), translate=[float(v) for v in translation[i]],
                       scale=float(scale[i]), shear=[float(shear[i]), 0.0],
                       interpolation=bilinear) for i in range(n)]), max(1, r // 3))),
    ]
    print(f"{n} images of 28×28, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"importing torchvision.transforms.v2.functional took {imported:.2f} s")
    print(f"| {'transform':<30} | capsviewer ms | v2.functional ms |")
    print(f"|{'-' * 32}|--------------:|-----------------:|")
    for name, ours, theirs in rows:
        print(f"| {name:<30} | {ours:13.2f} | {theirs:16.2f} |")


if __name__ == "__main__":
    main()
