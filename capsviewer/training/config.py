"""What a training run is: :class:`TrainConfig`, with every user-facing option declared once on
its field (help text, range, choices, the Training tab's label). ``capsviewer train``'s parser
and the Training tab's form are both built from :func:`train_options`."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from capsviewer.checks import number_problem
from capsviewer.data.augmentation import AUGMENTATION_TITLES, AUGMENTATIONS, SHIFT
from capsviewer.data.datasets import DATA_ROOT_HELP
from capsviewer.data.tasks import MULTIMNIST, TASK_TITLES, TASKS
from capsviewer.maths import ROUTING_ALGORITHMS, VECTOR_ROUTINGS
from capsviewer.models import MODELS, MULTIMNIST_MODELS, ROUTING_ITERATIONS, TITLES, configured_by
from capsviewer.training.devices import DEVICE_HELP, PRECISIONS

TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000  # MNIST's and Fashion-MNIST's splits
# Model names: the architectures, and for MultiMNIST its presets (36×36 inputs, two digits).
MODEL_NAMES = tuple(dict.fromkeys([*MODELS, *MULTIMNIST_MODELS]))
MODEL_TITLES = {**TITLES, "cnn-small": "CNN, small (MultiMNIST)"}


@dataclass(frozen=True)
class Option:
    """How one TrainConfig field is offered to a user."""

    help: str  # the command line's help and the Training tab's tooltip
    label: str | None = None  # the Training tab's row; None: the tab does not show it
    flag: str | None = None  # default --field-name
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    titles: Mapping[str, str] | None = None  # the tab's name for each choice
    step: float | None = None  # the tab's spin-box step
    key: str | None = None  # for a dict field: the entry the value sets (model_config)
    kind: str = "text"  # "device" and "path" get their own widgets in the tab
    # From the field (train_options fills them in):
    name: str = ""
    type: type = str  # int, float, str or bool
    default: Any = None
    optional: bool = False  # None is allowed: "all images", "the architecture's default"

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + (self.key or self.name).replace("_", "-")

    def problem(self, value) -> str | None:
        """Why ``value`` is not allowed here (a phrase such as "must be at least 1"), or None."""
        if value is None:
            return None if self.optional else "must be given"
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {', '.join(self.choices)}"
        if self.type in (int, float):
            return number_problem(value, self.type, self.minimum, self.maximum)
        kinds = (str, os.PathLike) if self.kind == "path" else self.type
        if not isinstance(value, kinds):
            return f"must be {'true or false' if self.type is bool else 'text'}"
        return None


def option(help: str, **details) -> dict:
    """Field metadata declaring a user-facing option (see :class:`Option`)."""
    return {"options": (Option(help=help, **details),)}


def entries(*declared: dict) -> dict:
    """Field metadata declaring several options, one per entry of a dict field (each with
    its ``key``)."""
    return {"options": tuple(opt for d in declared for opt in d["options"])}


@dataclass
class TrainConfig:
    model: str = field(default="capsnet", metadata=option(
        "architecture: CapsNet (Sabour et al. 2017), the max-pooling CNN baseline, matrix "
        "capsules with EM routing (Hinton et al. 2018), or Efficient-CapsNet (Mazzia et al. "
        "2021); with --dataset multimnist: capsnet, cnn (the authors' baseline) or cnn-small, "
        "at the paper's 36×36 sizes", label="Model", choices=MODEL_NAMES, titles=MODEL_TITLES))
    model_config: dict[str, Any] = field(default_factory=dict, metadata=entries(
        option("routing iterations (architectures that route; default: CapsNet 3, matrix "
               "capsules 2)", label="Routing iterations", key="routing_iterations",
               flag="--iterations", metavar="ITERATIONS", minimum=ROUTING_ITERATIONS[0],
               maximum=ROUTING_ITERATIONS[1]),
        option("how the CapsNet's votes become digit capsules (default: dynamic): dynamic "
               "routing (Sabour et al. 2017), uniform couplings (no routing), Efficient-CapsNet's "
               "self-attention in one pass (Mazzia et al. 2021) or inverted dot-product "
               "attention (Tsai et al. 2020)", label="Routing", key="routing",
               choices=VECTOR_ROUTINGS,
               titles={name: ROUTING_ALGORITHMS[name].title for name in VECTOR_ROUTINGS})))
    dataset: str = field(default="mnist", metadata=option(
        "training and test set; multimnist: pairs of overlapping MNIST digits (Sabour et al. "
        "2017, Section 6), drawn afresh every epoch, tested on 10,000 fixed pairs",
        label="Dataset", choices=TASKS, titles=TASK_TITLES))
    data_root: str | None = field(default=None, metadata=option(
        DATA_ROOT_HELP, metavar="PATH", kind="path"))
    download: bool = True  # fetch a missing data set (False: fail with a clear message)
    epochs: int = field(default=10, metadata=option(
        "passes over the data", label="Epochs", minimum=1, maximum=1000))
    batch_size: int = field(default=128, metadata=option(
        "images per step (shared among the processes under torchrun)", label="Batch size",
        minimum=1, maximum=65_536))
    learning_rate: float = field(default=1e-3, metadata=option(
        "initial Adam learning rate, decayed exponentially per step as in the authors' code",
        label="Learning rate", flag="--lr", metavar="LR", minimum=0.0, maximum=1.0,
        step=1e-4))
    # Exponential decay as in the authors' TensorFlow code: lr · 0.96^(step / 2000), per step.
    lr_decay: float = field(default=0.96, metadata=option(
        "the learning rate is multiplied by RATE every --decay-steps steps (smoothly, per step)",
        metavar="RATE", minimum=1e-3, maximum=1.0))
    decay_steps: int = field(default=2000, metadata=option(
        "steps per --lr-decay factor (469 is one MNIST epoch at batch 128; the paper's "
        "MultiMNIST runs decay 10× slower, 20000)", metavar="N",
        minimum=1, maximum=10**9))
    min_lr: float = field(default=0.0, metadata=option(
        "the learning rate decays no lower than this (Efficient-CapsNet's recipe: 5e-5)",
        metavar="LR", minimum=0.0, maximum=1.0))
    max_shift: int = 2  # random shifts of up to 2 px, the paper's only augmentation (MultiMNIST: 4)
    augmentation: str = field(default=SHIFT, metadata=option(
        "how training images are varied: shift, random shifts of up to 2 px (Sabour et al.); "
        "efficient-capsnet, Mazzia et al.'s recipe: rotation by up to 30° on half the images, "
        "a shift within the ink's margins, a horizontal squeeze, a 4×4 patch erased (their "
        "full recipe: --batch-size 16 --lr 5e-4 --lr-decay 0.97 --decay-steps 3750 --min-lr "
        "5e-5 --epochs 150)", label="Augmentation", choices=AUGMENTATIONS,
        titles=AUGMENTATION_TITLES))
    subset: int | None = field(default=None, metadata=option(
        "train on this many random images (MultiMNIST: digits, each paired afresh every epoch; "
        "default: all)", label="Training images",
        minimum=1, maximum=TRAIN_IMAGES, step=1000))
    test_subset: int | None = field(default=None, metadata=option(
        "test on this many random images after each epoch (MultiMNIST: the first pairs of "
        "the fixed test set; default: all)", label="Test images",
        minimum=1, maximum=TEST_IMAGES, step=1000))
    eval_batch_size: int = 500
    seed: int = field(default=0, metadata=option(
        "seed for weights, order and shifts", minimum=0, maximum=2**63 - 1))
    device: str = field(default="auto", metadata=option(
        DEVICE_HELP, label="Device", kind="device"))
    output: str | None = field(default=None, metadata=option(  # None: keep in memory
        "checkpoint written after every epoch", label="Checkpoint", metavar="PATH", kind="path"))
    resume: bool = field(default=False, metadata=option(  # from ``output`` and its state
        "continue an interrupted run at --output"))
    keep_epochs: bool = field(default=False, metadata=option(  # see epoch_checkpoint
        "also keep every epoch's checkpoint, in OUTPUT_STEM.epochs/ (for capsviewer average)"))
    init_from: str | None = field(default=None, metadata=option(
        "start from this checkpoint's weights (same architecture and config), with a fresh "
        "optimizer and schedule: fine-tuning", metavar="PATH", kind="path"))
    # "auto": bf16 convolutions (mixed precision) where the hardware does bf16 natively, else
    # fp32; "fp32" is the plain path (no TF32 either). See devices.resolve_precision.
    precision: str = field(default="auto", metadata=option(
        "bf16: convolutions in bf16 (mixed precision); auto: bf16 where the GPU or CPU does "
        "bf16 natively, else fp32", choices=PRECISIONS))
    channels_last: bool | None = None  # channels-last conv weights; None: with bf16
    compile: bool = field(default=False, metadata=option("torch.compile the model (GPUs)"))
    # Seconds between BatchProgress events; None: every batch on the CPU, 0.1 s elsewhere
    # (reading the metrics makes the host wait for the device).
    progress_interval: float | None = None

    def problems(self) -> list[str]:
        """Sentences for the declared options whose values are out of range."""
        found = []
        for opt in train_options():
            value = getattr(self, opt.name)
            if opt.key is not None:
                if not isinstance(value, dict):
                    found.append(f"{opt.name.replace('_', ' ')} must be a mapping, got {value!r:.60}")
                    continue
                value = value.get(opt.key)
            problem = opt.problem(value)
            if problem:
                found.append(f"{(opt.key or opt.name).replace('_', ' ')} {problem}, got {value!r:.60}")
        for opt in train_options():
            models = (configured_by(opt.key) if isinstance(self.model_config, dict)
                      and opt.key in self.model_config else ())
            if models and self.architecture not in models:
                name = opt.key.replace("_", " ")
                verb = "apply" if name.endswith("s") else "applies"
                named = ", ".join(models[:-1]) + " and " + models[-1] if len(models) > 1 \
                    else models[0]
                found.append(f"{name} {verb} to {named}, not to {self.model}")
        if self.dataset == MULTIMNIST and self.augmentation != SHIFT:
            found.append(f"the {self.augmentation} augmentation is for single images; "
                         "MultiMNIST pairs are shifted by up to 4 px")
        if self.dataset == MULTIMNIST and self.model not in MULTIMNIST_MODELS:
            found.append(f"MultiMNIST trains {', '.join(MULTIMNIST_MODELS)}, not {self.model}")
        if self.dataset != MULTIMNIST and self.model not in MODELS:
            found.append(f"{self.model} is a MultiMNIST model; train it with --dataset multimnist")
        return found

    @property
    def architecture(self) -> str:
        """The registered architecture ``model`` names (MultiMNIST presets name theirs)."""
        if self.dataset == MULTIMNIST and self.model in MULTIMNIST_MODELS:
            return MULTIMNIST_MODELS[self.model][0]
        return self.model

    def model_values(self) -> dict[str, Any]:
        """The model's config values: MultiMNIST's preset, then ``model_config`` over it."""
        preset = {}
        if self.dataset == MULTIMNIST and self.model in MULTIMNIST_MODELS:
            preset = MULTIMNIST_MODELS[self.model][1]
        return {**preset, **self.model_config}


def train_options() -> list[Option]:
    """The declared options, in field order, with their field's name, type and default."""
    hints = typing.get_type_hints(TrainConfig)
    declared = []
    for f in dataclasses.fields(TrainConfig):
        for opt in f.metadata.get("options", ()):
            kind = hints[f.name]
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            optional = len(args) < len(typing.get_args(kind))
            if optional:
                kind = args[0]
            default = None if f.default is dataclasses.MISSING else f.default
            if opt.key is not None:  # a dict field's entry: the model's default if unset
                kind, default, optional = str if opt.choices else int, None, True
            declared.append(dataclasses.replace(opt, name=f.name, type=kind, default=default,
                                                optional=optional))
    return declared
