"""The shipped models (capsviewer/resources/models) reproduce the accuracy their metadata
states, on all 10,000 test images (MultiMNIST: the 10,000 fixed test pairs), and stay small."""

import pytest

from capsviewer.data.tasks import MULTIMNIST, get_task
from capsviewer.training import evaluate, load_checkpoint
from capsviewer.training.model_files import SHIPPED_MODELS

SHIPPED = sorted(SHIPPED_MODELS.glob("*.safetensors"))
MAX_BYTES = {"mnist": 20_000_000, MULTIMNIST: 25_000_000}  # the 36×36 CapsNet: 11.4 M weights


def test_a_model_is_shipped():
    assert SHIPPED, "no checkpoint ships"


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_slow_shipped_model_reproduces_its_stated_accuracy(path, mnist_test):
    checkpoint = load_checkpoint(path)
    meta = checkpoint.metadata
    dataset = meta["dataset"]["name"]
    assert path.stat().st_size < MAX_BYTES[dataset]
    assert meta["dataset"]["test_images"] == "all"
    test = get_task(dataset).test_set(mnist_test)
    if dataset == MULTIMNIST:
        assert meta["dataset"]["test_sha256"] == test.checksum()
    result = evaluate(checkpoint.model, test, "cpu", 500)
    assert result.count == 10000
    assert result.correct == round(meta["metrics"]["test_accuracy"] * 10000)
    if result.digit_accuracy is not None:
        assert result.digit_accuracy == pytest.approx(meta["metrics"]["test_digit_accuracy"])
