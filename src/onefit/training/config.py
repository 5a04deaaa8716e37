"""The settings of a training run, as one dataclass that round-trips through JSON/TOML."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Everything a training run needs; each field says why it has its default.

    Example:
        >>> cfg = TrainConfig.from_dict({"epochs": 2, "strategy": "deps"})
        >>> cfg.epochs, cfg.strategy, cfg.lr
        (2, 'deps', 0.05)
    """

    # What to train.
    supernet: str = "mobilenetv3"  # a registered family (onefit.list_supernets())
    # Extra constructor arguments; num_classes/in_channels/image_size come from the data.
    supernet_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"  # a dataset name or a folder (onefit.data.load_dataset)
    val_fraction: float = 0.2  # held out of the training files for validation
    strategy: str = "sandwich"  # BigNAS's rule: the strongest default in the literature
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    # Start from these supernet weights (a state-dict file, e.g. of onefit.elasticize's
    # result): fine-tuning a converted pretrained model, InstaTune's recipe. A resumed
    # run continues from its checkpoint instead.
    init_weights: str | None = None

    # Optimisation: SGD with Nesterov momentum and a cosine schedule, as OFA and BigNAS;
    # "adamw" for transformers (HAT, InstaTune), which SGD trains poorly.
    optimizer: str = "sgd"
    epochs: int = 10
    batch_size: int = 64  # global batch (split across processes when distributed)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-5  # OFA's value; not applied to norms, biases, kernel transforms
    warmup_epochs: float = 0.0  # linear learning-rate warm-up before the cosine decay
    label_smoothing: float = 0.1  # on the labels loss (BigNAS, OFA)
    temperature: float = 1.0  # of the soft targets in distillation
    grad_clip: float = 0.0  # max global gradient norm; 0 disables

    # Evaluation and bookkeeping.
    bn_batches: int = 10  # training batches to recalibrate BN before each evaluation
    eval_configs: tuple[str, ...] = ("smallest", "largest")  # evaluated after every epoch
    seed: int = 0  # weights, data order, sub-network sampling: all follow it
    device: str = "auto"  # "auto": CUDA when available, else CPU
    amp: bool = True  # automatic mixed precision (used on CUDA only)
    run_dir: str = "runs/default"
    progress: bool = True  # progress bars (rank 0 only)
    tensorboard: bool = True  # also log epoch metrics to RUN_DIR/tensorboard when installed

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown key is a ``ValueError`` listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "eval_configs" in values:
            values["eval_configs"] = tuple(values["eval_configs"])
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["eval_configs"] = list(self.eval_configs)
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("val_fraction", 0 < self.val_fraction < 1, "between 0 and 1"),
            ("bn_batches", self.bn_batches >= 1, ">= 1"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("temperature", self.temperature > 0, "> 0"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "in [0, epochs]"),
            ("grad_clip", self.grad_clip >= 0, ">= 0"),
            ("optimizer", self.optimizer in ("sgd", "adamw"), "'sgd' or 'adamw'"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(
                    f"training setting {name}={getattr(self, name)!r} must be {allowed}"
                )
        for name in self.eval_configs:
            if name not in ("smallest", "largest") and not name.startswith("{"):
                raise ValueError(
                    f"eval_configs entries are 'smallest', 'largest' or a config JSON, got {name!r}"
                )
