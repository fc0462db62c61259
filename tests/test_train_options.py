"""TrainConfig's options are declared once: ``capsviewer train``'s parser and the Training tab's
form are both built from the declaration, so they offer the same options, ranges and choices."""

import argparse

import pytest
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from capsviewer.cli import build_parser
from capsviewer.cli.train import config_from
from capsviewer.training import TrainConfig, train_options


def train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_the_parser_offers_every_declared_option_with_its_default_and_choices():
    actions = {a.dest: a for a in train_parser()._actions}
    for opt in train_options():
        action = actions[opt.key or opt.name]
        assert action.option_strings == [opt.cli_flag] and action.help.startswith(opt.help)
        if opt.name != "output":  # its default is the CLI's file name pattern
            assert action.default == opt.default, opt.name
        if opt.choices is not None:
            assert tuple(action.choices) == opt.choices


def test_parsed_defaults_are_the_config_defaults():
    config = config_from(build_parser().parse_args(["train"]))
    defaults = TrainConfig()
    for opt in train_options():
        if opt.name != "output":
            assert getattr(config, opt.name) == getattr(defaults, opt.name), opt.name
    assert config.output == "checkpoints/capsnet-mnist.safetensors"
    parsed = config_from(build_parser().parse_args(["train", "--iterations", "5", "--lr", "0.01"]))
    assert parsed.model_config == {"routing_iterations": 5} and parsed.learning_rate == 0.01


@pytest.mark.parametrize("opt", [o for o in train_options() if o.minimum is not None],
                         ids=lambda o: o.key or o.name)
def test_the_parser_enforces_each_declared_range(opt, capsys):
    below = opt.minimum - (1 if opt.type is int else opt.minimum / 2 + 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", opt.cli_flag, str(below)])
    assert f"argument {opt.cli_flag}: must be" in capsys.readouterr().err
    if opt.maximum is not None:
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", opt.cli_flag, str(opt.maximum * 2)])


def test_the_form_has_a_row_per_labelled_option_with_its_range(qtbot):
    from capsviewer.app.views.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    labelled = [o for o in train_options() if o.label is not None]
    assert {o.label for o in labelled} >= {"Model", "Dataset", "Epochs", "Learning rate",
                                           "Routing iterations", "Device", "Checkpoint"}
    for opt in labelled:
        widget = view._fields[opt.key or opt.name]
        assert opt.help[1:] in widget.toolTip()
        if opt.choices is not None:
            assert isinstance(widget, QComboBox)
            assert [widget.itemData(i) for i in range(widget.count())] == list(opt.choices)
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            everything = opt.optional and opt.key is None  # 0 reads "all"
            assert widget.minimum() == (0 if everything else opt.minimum), opt.name
            assert widget.maximum() == min(opt.maximum, 2**31 - 1), opt.name
        else:
            assert isinstance(widget, (QLineEdit, QComboBox)), opt.name
    defaults = TrainConfig()
    config = view.config()
    for opt in labelled:
        if opt.key is None and opt.name != "output":
            assert getattr(config, opt.name) == getattr(defaults, opt.name), opt.name
    assert config.model_config == {"routing_iterations": 3, "routing": "dynamic"}


def test_the_routing_field_reaches_the_config_and_only_for_the_capsnet(qtbot):
    from capsviewer.app.views.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    routing = view._fields["routing"]
    routing.setCurrentIndex(routing.findData("self-attention"))
    assert routing.currentText() == "Self-attention routing"
    assert view.config().model_config["routing"] == "self-attention"
    model = view._fields["model"]
    model.setCurrentIndex(model.findData("cnn"))
    assert not routing.isEnabled() and view.config().model_config == {}
    model.setCurrentIndex(model.findData("matrix-capsnet"))
    assert not routing.isEnabled() and "routing" not in view.config().model_config
    view.set_config(TrainConfig(model_config={"routing": "inverted-attention"}))
    assert routing.isEnabled() and routing.currentData() == "inverted-attention"
    assert view.config().model_config["routing"] == "inverted-attention"


def test_the_augmentation_field_reaches_the_config_except_for_pairs(qtbot):
    from capsviewer.app.views.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    augmentation, dataset = view._fields["augmentation"], view._fields["dataset"]
    assert view.config().augmentation == "shift"
    augmentation.setCurrentIndex(augmentation.findData("efficient-capsnet"))
    assert augmentation.currentText() == "Efficient-CapsNet's recipe (Mazzia et al.)"
    assert view.config().augmentation == "efficient-capsnet"
    dataset.setCurrentIndex(dataset.findData("multimnist"))
    assert not augmentation.isEnabled()
    assert view.config().augmentation == "shift" and not view.config().problems()
    dataset.setCurrentIndex(dataset.findData("mnist"))
    assert augmentation.isEnabled() and view.config().augmentation == "efficient-capsnet"


def test_routing_is_parsed_into_the_model_config_and_refused_for_other_models():
    parsed = config_from(build_parser().parse_args(["train", "--routing", "uniform",
                                                    "--iterations", "2"]))
    assert parsed.model_config == {"routing_iterations": 2, "routing": "uniform"}
    assert parsed.problems() == []
    assert TrainConfig(model="efficient-capsnet",
                       model_config={"routing": "dynamic"}).problems() == [
        "routing applies to capsnet, not to efficient-capsnet"]
