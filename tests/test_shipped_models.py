"""The shipped models (capsviewer/resources/models) reproduce the accuracy their metadata
states, on all 10,000 test images, and stay small."""

import pytest

from capsviewer.training import evaluate, load_checkpoint
from capsviewer.training.model_files import SHIPPED_MODELS

SHIPPED = sorted(SHIPPED_MODELS.glob("*.safetensors"))


def test_a_model_is_shipped():
    assert SHIPPED, "no checkpoint ships"


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_slow_shipped_model_reproduces_its_stated_accuracy(path, mnist_test):
    assert path.stat().st_size < 20_000_000
    checkpoint = load_checkpoint(path)
    meta = checkpoint.metadata
    assert meta["dataset"]["name"] == "mnist" and meta["dataset"]["test_images"] == "all"
    result = evaluate(checkpoint.model, mnist_test, "cpu", 500)
    assert result.count == 10000
    assert result.correct == round(meta["metrics"]["test_accuracy"] * 10000)
