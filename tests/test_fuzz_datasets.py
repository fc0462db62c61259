"""Crafted dataset folders (fuzz_cases.DATASET_CASES): each is refused with one sentence
naming the file and what is wrong with it, by the loader, by ``eval`` and by ``train``, and
a checkpoint the run would have replaced stays as it was."""

import pytest

from capsviewer.cli import main
from capsviewer.data import DatasetUnavailable, load_dataset
from capsviewer.data.datasets import unpublished_note
from capsviewer.training import save_checkpoint

from fuzz_cases import DATASET_CASES, IMAGES, LABELS, idx, random_split, tiny_cnn, write_dataset


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "cnn.safetensors"
    save_checkpoint(path, tiny_cnn(), {"epoch": 1, "dataset": {"name": "mnist"}})
    return path, path.read_bytes()


@pytest.mark.parametrize("name", sorted(DATASET_CASES))
def test_a_bad_test_set_is_refused_in_one_sentence(name, tmp_path, good, capsys):
    make, phrase = DATASET_CASES[name]
    root = write_dataset(tmp_path, make())
    with pytest.raises(DatasetUnavailable) as refused:
        load_dataset("mnist", train=False, root=root, download=False)
    message = str(refused.value)
    assert phrase in message and "\n" not in message and str(root) in message
    checkpoint, before = good
    assert main(["eval", str(checkpoint), "--data-root", str(root), "--device", "cpu",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("capsviewer eval: error: ") and len(err.strip().splitlines()) == 1
    assert phrase in err and "Traceback" not in err
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize("name", ["labels-255", "images-a-folder", "labels-short"])
def test_training_on_a_bad_set_stops_before_it_starts(name, tmp_path, good, capsys):
    make, phrase = DATASET_CASES[name]
    files = {f.replace("t10k", "train"): content for f, content in make().items()}
    root = write_dataset(tmp_path / "data", {**files, IMAGES: random_split()[0],
                                             LABELS: random_split()[1]})
    checkpoint = tmp_path / "run.safetensors"
    checkpoint.write_bytes(good[1])
    assert main(["train", "--model", "cnn", "--data-root", str(root), "--output",
                 str(checkpoint), "--epochs", "1", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "capsviewer train: error: " in err and phrase in err and "Traceback" not in err
    assert checkpoint.read_bytes() == good[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.safetensors"]


def test_an_altered_set_is_said_to_differ_from_the_published_one(mnist_test, tmp_path, capsys,
                                                                 good):
    """Same size, other bytes: it loads (it may be someone's own digits), and is named."""
    assert unpublished_note(mnist_test) is None
    images = mnist_test.images[:, 0].numpy().copy()
    images[0, 14, 14] ^= 0xFF
    root = write_dataset(tmp_path, {IMAGES: idx(images), LABELS: idx(mnist_test.labels.numpy())})
    altered = load_dataset("mnist", train=False, root=root, download=False)
    assert "is not the published one" in unpublished_note(altered)
    assert main(["eval", str(good[0]), "--data-root", str(root), "--device", "cpu",
                 "--no-progress", "--subset", "10"]) == 0
    assert "note: the MNIST test set in the data folder is not the published one" in \
        capsys.readouterr().err
