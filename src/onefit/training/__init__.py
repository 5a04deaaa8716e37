"""Training supernets: strategies, the trainer, BN recalibration, evaluation, checkpoints."""

from onefit.training.bn import recalibrate_bn, resize
from onefit.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_supernet,
    save_checkpoint,
)
from onefit.training.config import TrainConfig
from onefit.training.evaluate import evaluate_config, evaluate_model
from onefit.training.strategies import (
    TRAINING_STRATEGIES,
    Strategy,
    SubnetTask,
    create_strategy,
    list_strategies,
    register_strategy,
)
from onefit.training.trainer import Trainer, TrainingError, TrainResult, train

__all__ = [
    "TRAINING_STRATEGIES",
    "CheckpointError",
    "Strategy",
    "SubnetTask",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "create_strategy",
    "evaluate_config",
    "evaluate_model",
    "list_strategies",
    "load_checkpoint",
    "load_supernet",
    "recalibrate_bn",
    "register_strategy",
    "resize",
    "save_checkpoint",
    "train",
]
