import shutil

import pytest
import torch

from capsviewer.data import (
    DATASETS,
    ENV_VAR,
    DatasetUnavailable,
    datasets,
    iterate_batches,
    load_dataset,
    resolve_data_root,
)


def test_mnist_from_the_data_root(mnist_train, mnist_test):
    assert mnist_train.images.shape == (60000, 1, 28, 28) and mnist_train.images.dtype == torch.uint8
    assert len(mnist_test) == 10000
    assert mnist_train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(mnist_train.images.float().mean().item() / 255 - 0.1307) < 1e-3


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_root("/explicit") == resolve_data_root("/explicit").__class__("/explicit")
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    assert resolve_data_root().name == "datasets"


def test_missing_dataset_offline_says_where_files_go(offline, tmp_path):
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)
    assert "train-images-idx3-ubyte" in str(info.value) and ENV_VAR in str(info.value)
    assert not offline
    with pytest.raises(DatasetUnavailable, match="MNIST test set is not available: the download "
                       "failed .*ossci-datasets.*no network") as info:
        load_dataset("mnist", train=False, root=tmp_path)
    assert "train-" not in str(info.value)  # the test set needs only its own two files


def test_the_test_set_is_downloaded_alone_checked_and_unpacked(mnist_mirror, tmp_path, data_root):
    """A missing test set is fetched from torchvision's mirrors, file by file with progress,
    MD5-checked and unpacked; the training set is never asked for."""
    served, requested = mnist_mirror
    progress = []
    test = load_dataset("mnist", train=False, root=tmp_path, progress=lambda *p: progress.append(p))
    assert [url.rsplit("/", 1)[1] for url in requested] == list(served)
    assert torch.equal(test.images, load_dataset("mnist", False, data_root, False).images)
    labels = "t10k-labels-idx1-ubyte.gz"
    assert progress[-1] == (len(served[labels]), len(served[labels]), labels)
    assert not list((tmp_path / "MNIST" / "raw").glob("train-*"))

    served["t10k-images-idx3-ubyte.gz"] = b"corrupted in transit"
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
        (tmp_path / "MNIST" / "raw" / name).unlink()
    with pytest.raises(DatasetUnavailable, match="MD5 sum"):
        load_dataset("mnist", train=False, root=tmp_path)
    assert not list((tmp_path / "MNIST" / "raw").glob("t10k-images*"))  # no partial file left


def test_subset_and_batches(mnist_test):
    a, b = mnist_test.subset(300, seed=1), mnist_test.subset(300, seed=1)
    assert torch.equal(a.labels, b.labels) and len(a) == 300
    assert not torch.equal(a.labels, mnist_test.subset(300, seed=2).labels)
    sizes = [len(y) for _, y in iterate_batches(a.images, a.labels, 128)]
    assert sizes == [128, 128, 44]
    seen = torch.cat([y for _, y in iterate_batches(a.images, a.labels, 128, shuffle=True,
                                                    generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == sorted(a.labels.tolist()) and not torch.equal(seen, a.labels)


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    test = load_dataset("fashion-mnist", train=False, root=tmp_path / "empty", download=False)
    assert len(test) == 10000 and test.classes[9] == "Ankle boot"


def test_direct_idx_reading_equals_torchvision(data_root, mnist_test):
    from torchvision.datasets import MNIST

    reference = MNIST(str(data_root), train=False, download=False)
    assert torch.equal(mnist_test.images[:, 0], reference.data)
    assert torch.equal(mnist_test.labels, reference.targets)


def test_a_damaged_idx_file_gets_a_clear_message(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in DATASETS["mnist"].files:
        shutil.copy(data_root / "MNIST" / "raw" / name, raw / name)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DatasetUnavailable, match="truncated"):
        load_dataset("mnist", train=False, root=tmp_path, download=False)
