"""Training, evaluation, devices and checkpoints; no Qt here.

Importing the package does not import torch: each name below is imported from its module on
first use, so the command line's help and the app's window come up before torch is loaded."""

from capsviewer import lazy_exports

_EXPORTS = {
    "Checkpoint": "checkpoints",
    "CheckpointError": "checkpoints",
    "load_checkpoint": "checkpoints",
    "read_metadata": "checkpoints",
    "save_checkpoint": "checkpoints",
    "Option": "config",
    "TrainConfig": "config",
    "train_options": "config",
    "DeviceUnavailable": "devices",
    "describe_device": "devices",
    "select_device": "devices",
    "Evaluation": "evaluation",
    "EvaluationProgress": "evaluation",
    "evaluate": "evaluation",
    "BatchProgress": "trainer",
    "EpochResult": "trainer",
    "Trainer": "trainer",
    "TrainingError": "trainer",
    "TrainingFinished": "trainer",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
