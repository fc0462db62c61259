"""Write the MNIST test-set sample that ships in capsviewer/resources/data: the first 1,000 test
images and labels, uint8, as safetensors (784 kB). Run from the checkout:

    python tools/make_test_sample.py --data-root ../shared/data
"""

import argparse
from pathlib import Path

from safetensors.torch import save_file

from capsviewer.data import load_dataset
from capsviewer.data.sample import SAMPLE_METADATA, SAMPLE_SIZE, sample_path


def mnist_test_set(doc: str):
    """The MNIST test set from the command line's --data-root (the tools' one option)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-root", type=Path, help="where MNIST is (torchvision's layout)")
    args = parser.parse_args()
    return load_dataset("mnist", train=False, root=args.data_root, download=False)


def main() -> None:
    test = mnist_test_set(__doc__)
    tensors = {"images": test.images[:SAMPLE_SIZE].contiguous(),
               "labels": test.labels[:SAMPLE_SIZE].to(dtype=test.images.dtype)}
    path = sample_path("mnist")
    save_file(tensors, str(path), metadata=SAMPLE_METADATA)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
