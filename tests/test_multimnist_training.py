"""MultiMNIST through the trainer and the command line: the same trainer composes pairs instead
of single images, learns beyond chance-level pairing, and its checkpoints say what they were
tested on; eval, info and export work on them."""

import csv

import pytest
import torch

from capsviewer.cli import main
from capsviewer.data.multimnist import fixed_test_pairs
from capsviewer.data.tasks import Pairs, Singles, get_task
from capsviewer.training import TrainConfig, Trainer, TrainingError, evaluate, load_checkpoint
from capsviewer.training.ensemble import evaluate_ensemble

SMALL_CAPSNET = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64],
                 "vote_init_std": 0.1}


def pair_config(**overrides):
    values = dict(dataset="multimnist", model="capsnet", model_config=SMALL_CAPSNET, epochs=12,
                  batch_size=64, subset=300, test_subset=300, learning_rate=5e-3, device="cpu",
                  seed=0)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(mnist_train, mnist_test, tmp_path_factory):
    """A small 36×36 CapsNet, two steps of the trainer on pairs of 64 digits: a checkpoint for
    the commands."""
    output = tmp_path_factory.mktemp("multimnist") / "capsnet-multimnist.safetensors"
    config = pair_config(output=str(output), epochs=2, subset=64, test_subset=300)
    return Trainer(config, mnist_train, mnist_test).run(), output


@pytest.mark.slow
def test_the_trainer_pairs_digits_far_better_than_chance(mnist_train, mnist_test):
    """60 steps of 64 pairs drawn afresh from 300 training digits. Chance: a random pair of
    classes is the right one 1 time in 45; a random class is among an image's two in 2 of 10."""
    finished = Trainer(pair_config(), mnist_train, mnist_test).run()
    last = finished.history[-1]
    assert finished.completed and len(finished.history) == 12
    assert last.test_accuracy > 4 / 45
    assert last.test_digit_accuracy > 0.3
    assert 0 <= last.test_accuracy <= last.test_digit_accuracy  # both right ⊂ each right


def test_the_checkpoint_records_the_pairs_it_was_trained_and_tested_on(trained, mnist_train,
                                                                        mnist_test):
    _, output = trained
    checkpoint = load_checkpoint(output)
    meta, config = checkpoint.metadata, checkpoint.model.config
    assert (config.image_size, config.num_targets, config.primary_grid) == (36, 2, (4, 10, 10))
    dataset = meta["dataset"]
    assert dataset["name"] == "multimnist" and dataset["overlay"] == "sum"
    assert dataset["test_seed"] == 2017 and dataset["test_pairs"] == 300
    assert dataset["test_sha256"] == fixed_test_pairs(mnist_test)[:300].checksum()
    assert dataset["train_sha256"] == mnist_train.subset(64, 0).checksum()
    # The stored figures are the model's on those pairs.
    result = evaluate(checkpoint.model, fixed_test_pairs(mnist_test)[:300],
                      precision=meta["precision"])
    assert result.accuracy == meta["metrics"]["test_accuracy"]
    assert result.digit_accuracy == meta["metrics"]["test_digit_accuracy"]


def test_a_pair_batch_is_two_digits_and_each_digit_its_decoders_target(mnist_train):
    train = mnist_train.subset(200, 0)
    task = get_task("multimnist")
    assert isinstance(task, Pairs) and isinstance(get_task("mnist"), Singles)
    plan = task.draw_epoch(train.labels, torch.Generator().manual_seed(0), torch.device("cpu"))
    batch = task.batch(train.images, train.labels, plan, torch.arange(10, 20))
    assert batch.images.shape == (10, 1, 36, 36) and batch.targets.shape == (10, 2, 1, 36, 36)
    assert torch.equal(batch.labels[:, 0], train.labels[plan.order[10:20]])  # order, then pairs
    assert (batch.labels[:, 0] != batch.labels[:, 1]).all()
    overlay = (batch.targets.sum(1) * 255).round().clamp(max=255) / 255
    assert torch.allclose(batch.images, overlay, atol=1e-6)  # sum clipped, as generated


@pytest.mark.parametrize("model, dataset, message", [
    ("matrix-capsnet", "multimnist", "MultiMNIST trains capsnet, cnn, cnn-small"),
    ("cnn-small", "mnist", "cnn-small is a MultiMNIST model"),
])
def test_a_model_without_a_multimnist_form_is_a_sentence(model, dataset, message):
    with pytest.raises(TrainingError, match=message):
        Trainer(TrainConfig(model=model, dataset=dataset, device="cpu"))


def test_the_multimnist_names_build_the_papers_36_pixel_models():
    cnn = Trainer(TrainConfig(model="cnn", dataset="multimnist", device="cpu")).model
    small = Trainer(TrainConfig(model="cnn-small", dataset="multimnist", device="cpu")).model
    assert (cnn.config.channels, cnn.config.image_size, cnn.config.num_targets) == ((512, 256), 36, 2)
    assert sum(p.numel() for p in cnn.parameters()) == 24_535_306
    assert sum(p.numel() for p in small.parameters()) == 881_290


def test_an_ensemble_of_pair_models_counts_pairs_with_both_digits():
    labels = torch.tensor([[0, 1], [2, 3]])
    one = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.9, 0.0, 0.8, 0.7]])
    two = torch.tensor([[0.8, 0.9, 0.0, 0.1], [0.0, 0.0, 0.8, 0.9]])
    result = evaluate_ensemble([one, two], labels)
    # Mean: pair 0 → {0, 1} right; pair 1 → {2, 3} (0.45 < 0.8, 0.8) right. Model one's top two
    # in pair 1 are {0, 2}, model two's {2, 3}: they disagree there only.
    assert (result.correct, result.disagreements, result.wrong) == (2, 1, ())


def test_eval_and_info_report_top_2_and_per_digit_accuracy(trained, data_root, capsys):
    finished, output = trained
    last = finished.history[-1]
    assert main(["eval", str(output), "--data-root", str(data_root), "--no-progress",
                 "--subset", "300"]) == 0
    out = capsys.readouterr().out
    assert "multimnist test set (300 pairs" in out
    assert f"top-2 accuracy {last.test_accuracy:.2%}" in out
    assert f"per-digit accuracy {last.test_digit_accuracy:.2%}" in out
    assert "matches the accuracy stored" in out
    assert main(["info", str(output)]) == 0
    out = capsys.readouterr().out
    assert f"test_digit_accuracy {last.test_digit_accuracy:.4%}" in out
    assert "accuracies are top-2" in out and "300 fixed pairs (seed 2017)" in out


def test_export_writes_a_test_pair_or_two_chosen_digits(trained, data_root, tmp_path, capsys):
    _, output = trained
    common = ["--model", str(output), "--data-root", str(data_root)]
    assert main(["export", *common, "--index", "4", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "files for test pair 4" in out
    for name in ("overlap.png", "overlap-reconstructions.svg", "overlap-capsule-a.svg",
                 "overlap-capsule-b.svg", "overlap-lengths.svg", "overlap-routing.svg"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    with open(tmp_path / "a" / "overlap-pair.csv") as f:
        pair = next(csv.DictReader(f))
    assert pair["test_pair"] == "4" and pair["first"] == "4"
    with open(tmp_path / "a" / "overlap-routing.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4 * 10 * 10  # iterations × primary capsules
    assert {float(r["a_share"]) for r in rows if r["iteration"] == "1"} == {0.5}  # uniform
    assert main(["export", *common, "--pair", "7", "11", "--out", str(tmp_path / "b")]) == 0
    with open(tmp_path / "b" / "overlap-pair.csv") as f:
        pair = next(csv.DictReader(f))
    assert (pair["first"], pair["second"], pair["test_pair"]) == ("7", "11", "")
    with open(tmp_path / "b" / "overlap-images.csv") as f:
        images = list(csv.DictReader(f))
    assert len(images) == 36 * 36
    assert any(r["reconstruction_a"] != r["reconstruction_b"] for r in images)


def test_export_of_a_pair_explains_what_it_cannot_do(trained, data_root, tmp_path, capsys):
    _, output = trained
    common = ["export", "--model", str(output), "--data-root", str(data_root),
              "--out", str(tmp_path)]
    assert main([*common, "--index", "10000"]) == 2
    assert "test pair 10000 does not exist: there are 10,000" in capsys.readouterr().err
    assert main([*common, "--pair", "3", "10000"]) == 2
    assert "test digit 10000 does not exist" in capsys.readouterr().err
    image = tmp_path / "digit.png"
    image.write_bytes(b"")
    assert main([*common, "--image", str(image)]) == 2
    assert "takes pairs of test digits, not an image file" in capsys.readouterr().err


def test_train_command_trains_a_multimnist_preset(data_root, tmp_path, capsys):
    output = tmp_path / "small.safetensors"
    assert main(["train", "--dataset", "multimnist", "--model", "cnn-small", "--epochs", "1",
                 "--subset", "64", "--test-subset", "50", "--batch-size", "32", "--device", "cpu",
                 "--data-root", str(data_root), "--no-progress", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "training cnn-small on multimnist" in out and "(top-2; per digit " in out
    model = load_checkpoint(output).model
    assert (model.architecture, model.config.image_size, model.config.num_targets) == ("cnn", 36, 2)
