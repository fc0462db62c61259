"""Training, evaluation, devices and checkpoints; no Qt here."""

from capsviewer.training.checkpoints import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from capsviewer.training.config import Option, TrainConfig, train_options
from capsviewer.training.devices import DeviceUnavailable, describe_device, select_device
from capsviewer.training.evaluation import Evaluation, EvaluationProgress, evaluate
from capsviewer.training.trainer import (
    BatchProgress,
    EpochResult,
    Trainer,
    TrainingError,
    TrainingFinished,
)

__all__ = [
    "BatchProgress",
    "Checkpoint",
    "CheckpointError",
    "DeviceUnavailable",
    "EpochResult",
    "Evaluation",
    "EvaluationProgress",
    "Option",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingFinished",
    "describe_device",
    "evaluate",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
    "select_device",
    "train_options",
]
