import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """The MNIST copy tests use: $CAPSVIEWER_DATA, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("CAPSVIEWER_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide MNIST: set CAPSVIEWER_DATA (see README)")
        pytest.skip("MNIST not found: set CAPSVIEWER_DATA to a folder holding MNIST/raw")
    return root


@pytest.fixture(scope="session")
def mnist_train(data_root):
    from capsviewer.data import load_dataset

    return load_dataset("mnist", train=True, root=data_root, download=False)


@pytest.fixture(scope="session")
def mnist_test(data_root):
    from capsviewer.data import load_dataset

    return load_dataset("mnist", train=False, root=data_root, download=False)
