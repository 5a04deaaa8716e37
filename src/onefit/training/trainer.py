"""The training loop: one supernet, one strategy, exact resume, optional data parallelism.

Determinism is built in rather than bolted on: the data order of an epoch, the
sub-networks of a step and the dropout masks of a step are all functions of the seed and
the epoch/step number. A run resumed from a checkpoint therefore replays exactly what
an uninterrupted run would have done, and every process of a distributed run samples
the same sub-networks without talking to the others.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn

from onefit.data import DataSplits, from_datasets, load_dataset
from onefit.data.lazy import LazyImages
from onefit.data.loader import (
    EpochBatches,
    InOrder,
    ProblemReport,
    close_loader,
    default_workers,
    make_loader,
)
from onefit.data.prepare import training_view
from onefit.data.splits import Samples, calibration_indices
from onefit.errors import OnefitError, UnknownNameError, UserError, UserTypeError
from onefit.files import read_state_dict, write_json_atomic
from onefit.rundir import RunDir
from onefit.space import ArchConfig
from onefit.supernets import Supernet, create_supernet, list_supernets
from onefit.tasks import Task, create_task
from onefit.training import distributed
from onefit.training.bn import resize
from onefit.training.checkpoint import (
    RESUME_KEYS,
    CheckpointError,
    is_checkpoint_file,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from onefit.training.config import TrainConfig
from onefit.training.evaluate import evaluate_config
from onefit.training.progress import TrainProgress
from onefit.training.strategies import Strategy, SubnetTask, create_strategy

Batch = tuple[torch.Tensor, torch.Tensor]
# The entries of an epoch record that are measured time, not results: they differ
# between two otherwise identical runs.
TIMING_KEYS = ("epoch_seconds", "images_per_second", "data_wait_share")


class TrainingError(OnefitError, RuntimeError):
    """Training cannot go on (for example a non-finite loss).

    Not a :class:`~onefit.errors.UserError`: every setting passed its checks and the run
    failed while working, so the command line keeps the traceback in a log (exit 1).
    The message still says what to try (a lower learning rate, other data).
    """


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    supernet: Supernet
    run_dir: Path
    checkpoint: Path
    steps: int  # optimizer steps taken in total (including before a resume)
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    interrupted: str | None = None  # the signal (or "stop_after_steps") that paused it

    @property
    def finished(self) -> bool:
        return self.steps >= self.total_steps


def cosine_schedule(base_lr: float, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to ``base_lr``, then cosine decay to 0 at ``total_steps``."""

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return lr_at


def _param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; never on norms, biases or kernel transforms
    (decaying a transform pulls it from the identity towards zero)."""
    decay, no_decay = [], []
    for name, param in net.named_parameters():
        if param.dim() > 1 and "kernel_transforms" not in name:
            decay.append(param)
        else:
            no_decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (CNN supernets) or AdamW (transformers)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
    )


class _StopFlag:
    """Records SIGINT/SIGTERM so the loop can checkpoint and stop between two steps."""

    def __init__(self) -> None:
        self.reason: str | None = None

    @contextmanager
    def installed(self) -> Iterator[_StopFlag]:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.reason = signal.Signals(signum).name

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals cannot be caught here
            yield self
            return
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class Trainer:
    """Trains a supernet with a strategy; see :func:`train` for the usual entry point."""

    def __init__(
        self,
        config: TrainConfig,
        data: DataSplits | None = None,
        *,
        supernet: Supernet | None = None,
    ) -> None:
        config.validate()
        if supernet is None and config.supernet not in list_supernets():
            raise UnknownNameError(  # before any data is read
                f"unknown supernet {config.supernet!r} (training setting supernet); "
                f"known: {', '.join(list_supernets())}"
            )
        self.config = config
        self.dist = distributed.setup(config.device)
        self.device = self.dist.device
        self.run_dir = Path(config.run_dir)
        self.paths = RunDir(self.run_dir)
        # Data passed in memory cannot be reloaded from the run's settings by later stages.
        self.data_source = "dataset" if data is None else "memory"
        self.recipe = config.recipe()
        self.data = (
            data
            if data is not None
            else load_dataset(
                config.dataset,
                val_fraction=config.val_fraction,
                seed=config.seed,
                image_size=config.image_size,
                recipe=self.recipe,
                mean=config.mean or None,
                std=config.std or None,
            )
        )
        self.task = task_of(config)
        if self.task.name == "classification":
            check_classes(self.data, config.supernet_kwargs.get("num_classes"))
        torch.manual_seed(config.seed)
        if supernet is not None:
            # A supernet the caller built (onefit.elasticize of their own model, say): the
            # run records its spec, when it has one, so that it can be rebuilt later.
            check_supernet_instance(supernet, config)
            spec = supernet.spec or {}
            self.supernet_name = str(spec.get("name", type(supernet).__name__))
            self.supernet_kwargs = dict(spec.get("kwargs", {}))
            if self.task.name == "classification":
                check_classes(self.data, getattr(supernet, "num_classes", None), built=True)
            self.net = supernet.to(self.device)
        else:
            self.supernet_name = config.supernet
            self.supernet_kwargs = {
                "num_classes": self.data.num_classes,
                "in_channels": self.data.in_channels,
                "image_size": self.data.image_size,
                **config.supernet_kwargs,
            }
            self.net = create_supernet(config.supernet, **self.supernet_kwargs).to(self.device)
        if config.init_weights:
            _load_initial_weights(self.net, config.init_weights)
        distributed.broadcast_parameters(self.net, self.dist)
        self.strategy: Strategy = create_strategy(config.strategy, **config.strategy_kwargs)
        self.steps_per_epoch = len(self.data.train) // config.batch_size
        if self.steps_per_epoch < 1:
            raise UserError(
                f"batch_size {config.batch_size} is larger than the training split "
                f"({len(self.data.train)} samples)"
            )
        if config.batch_size % self.dist.world_size:
            raise UserError(
                f"batch_size {config.batch_size} must divide evenly over "
                f"{self.dist.world_size} processes"
            )
        self.total_steps = config.epochs * self.steps_per_epoch
        warmup = round(config.warmup_epochs * self.steps_per_epoch)
        self.schedule = cosine_schedule(config.lr, self.total_steps, warmup)
        self.strategy.setup(self.net.space, self.total_steps, schedule=self.schedule)
        self.optimizer = _optimizer(config, _param_groups(self.net, config.weight_decay))
        self.precision = _precision(config, self.device)
        # Loss scaling only for float16: bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == torch.float16)
        self.autocast: Callable[[], Any] = (
            (lambda: torch.autocast("cuda", dtype=self.precision))
            if self.precision != torch.float32
            else nullcontext
        )
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # each sub-network's shapes tuned once
        images = self.net.input_spec.kind == "image"
        self.memory_format = (
            torch.channels_last if cuda and images and config.channels_last else None
        )
        if self.memory_format is not None:
            self.net.to(memory_format=self.memory_format)
        self.mix = self.recipe.batch_transform(self.data.num_classes)
        if self.mix is not None and self.task.name != "classification":
            raise UserError(
                f"mixup/cutmix mix class labels; task {self.task.name!r} has none "
                "(set mixup_alpha and cutmix_alpha to 0)"
            )
        # Workers pay when items cost something to make (decoding files, random
        # augmentation); for tensors in memory they would only add copies between processes.
        busy = isinstance(self.data.train, LazyImages) or self.recipe.augments_items
        auto = default_workers(self.dist.world_size) if busy else 0
        self.num_workers = auto if config.num_workers is None else config.num_workers
        self.sampler = EpochBatches(
            len(self.data.train),
            batch_size=config.batch_size,
            seed=config.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.loader = make_loader(
            training_view(self.data, self.recipe),
            self.sampler,
            num_workers=self.num_workers,
            device=self.device,
            target_dtype=self.task.target_dtype,
        )
        self.problems = ProblemReport(config.bad_items)
        # Step losses still on the device: (step, sub-networks, losses), read every
        # log_every steps so that the host never waits for the GPU after each step.
        self.pending: list[tuple[int, list[ArchConfig], torch.Tensor]] = []
        self.step = 0
        self.teacher: nn.Module | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch_losses: list[float] = []  # this epoch's step losses so far
        self._eval_cache: tuple[list[Batch], list[Batch]] | None = None
        self.tensorboard = (
            _tensorboard_writer(self.paths.tensorboard_dir)
            if config.tensorboard and self.dist.is_main
            else None
        )

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.paths.checkpoint

    def state(self) -> dict[str, Any]:
        return {
            "supernet": {
                "name": self.supernet_name,
                "kwargs": self.supernet_kwargs,
                "space": self.net.space.to_dict(),
                # False when the supernet was passed in and cannot be rebuilt from a spec.
                "rebuildable": self.net.spec is not None,
            },
            "train_config": self.config.to_dict(),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # The learning rate is a pure function of the step; this records which one.
            "scheduler": {"kind": "cosine", "total_steps": self.total_steps, "step": self.step},
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "step": self.step,
            "history": self.history,
            "epoch_losses": self.epoch_losses,
        }

    def save(self) -> Path:
        if self.dist.is_main:
            save_checkpoint(self.state(), self.checkpoint_path)
        distributed.barrier(self.dist)
        return self.checkpoint_path

    def restore(self, path: Path) -> None:
        state = load_checkpoint(
            path,
            supernet=self.supernet_name,
            space=self.net.space.to_dict(),
            kwargs=self.supernet_kwargs,
            map_location=self.device,
            required=RESUME_KEYS,
        )
        planned = state["scheduler"].get("total_steps")
        if planned != self.total_steps:
            raise UserError(
                f"{path}: checkpoint planned {planned} steps, this run "
                f"{self.total_steps}; resume with the same epochs, batch size and data"
            )
        load_weights(self.net, state["model"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.strategy.load_state_dict(state["strategy"])
            if state["teacher"] is not None:
                self.teacher = self._frozen_copy()
                self.teacher.load_state_dict(state["teacher"])
            torch.set_rng_state(state["rng"]["torch"].cpu())
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(
                f"{path}: cannot resume from this checkpoint ({type(error).__name__}: {first})"
            ) from None
        self.step = state["step"]
        self.history = list(state["history"])
        self.epoch_losses = list(state["epoch_losses"])

    # -- one step ---------------------------------------------------------------------------
    def _frozen_copy(self) -> nn.Module:
        teacher = self.net.extract(self.net.space.largest())
        for param in teacher.parameters():
            param.requires_grad_(False)
        return teacher

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This process's training batches of ``epoch`` from batch ``start`` on, on the
        device: what the training loop reads."""
        self.sampler.set_epoch(epoch, start)
        for inputs, targets, problems in self.loader:
            self.problems.check(problems)
            yield self._to_device((inputs, targets))

    def _to_device(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Batch:
        inputs, targets = (t.to(self.device, non_blocking=True) for t in batch)
        if self.memory_format is not None and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=self.memory_format)
        return inputs, targets

    def _run_task(
        self,
        task: SubnetTask,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        teacher: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and outputs of one sub-network; ``teacher`` holds the step's teacher outputs."""
        self.net.set_active(task.config)
        with self.autocast():
            outputs = self.net(self._sized(inputs, task.config))
        temperature = self.config.temperature
        if task.target == "labels" or teacher is None:
            loss = self.task.loss(outputs, labels)
        elif task.target == "teacher":
            loss = self.task.distillation_loss(outputs, teacher, temperature)
        else:  # "both"
            loss = self.task.loss(outputs, labels)
            loss = loss + self.task.distillation_loss(outputs, teacher, temperature)
        return loss, outputs

    def _sized(self, inputs: torch.Tensor, config: ArchConfig) -> torch.Tensor:
        """Images resized to the config's resolution; other inputs as they are."""
        return resize(inputs, int(config["r"])) if "r" in config else inputs

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Run the strategy's tasks for this step, accumulate gradients, step the optimizer.

        Returns the step's task losses as a tensor on the device (nothing is read back
        here: see :meth:`_flush`)."""
        step = self.step
        rng = np.random.default_rng([self.config.seed, step])
        torch.manual_seed(self.config.seed * 1_000_003 + step)  # dropout masks follow the step
        freeze_at = self.strategy.frozen_teacher_step
        if freeze_at is not None and step >= freeze_at and self.teacher is None:
            self.teacher = self._frozen_copy()
        lr = self.schedule(step) * self.strategy.lr_scale(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        if self.mix is not None:  # mixup/cutmix, drawn from the step's seed
            images, labels = self.mix(images, labels)
        teacher = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(self._sized(images, self.net.space.largest())).float()
        losses, configs = [], []
        for task in self.strategy.tasks(step, rng):
            loss, outputs = self._run_task(task, images, labels, teacher)
            self.scaler.scale(loss * task.weight).backward()
            losses.append(loss.detach().float())
            configs.append(task.config)
            if task.teacher:
                teacher = outputs.detach().float()
        distributed.average_gradients(self.net, self.dist)
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        distributed.average_buffers(self.net, self.dist)
        self.step += 1
        step_losses = torch.stack(losses)
        self.pending.append((step, configs, step_losses))
        return step_losses

    def _flush(self) -> list[float]:
        """Read the pending step losses back (one transfer), check them, return the sum
        of each step's task losses. A non-finite loss stops training with the step and
        sub-network it came from; the checkpoint on disk predates it."""
        if not self.pending:
            return []
        values = torch.cat([losses for _, _, losses in self.pending]).cpu().tolist()
        bad, sums, i = None, [], 0
        for step, configs, losses in self.pending:
            step_values = values[i : i + len(losses)]
            i += len(losses)
            sums.append(float(sum(step_values)))
            for config, value in zip(configs, step_values):
                if bad is None and not math.isfinite(value):
                    bad = (step, config, value)
        self.pending = []
        if distributed.any_true(bad is not None, self.dist):
            where = (
                f"at step {bad[0]} (sub-network {bad[1].to_json()}, loss {bad[2]})"
                if bad
                else "on another process"
            )
            lr = self.schedule(bad[0] if bad else self.step)
            raise TrainingError(
                f"non-finite loss {where}; stopped. The last good checkpoint is "
                f"{self.checkpoint_path if self.checkpoint_path.exists() else '(none yet)'}; "
                f"lower the learning rate (now {lr:.3g}) or check the data"
            )
        self.epoch_losses.extend(sums)
        return sums

    # -- evaluation -------------------------------------------------------------------------
    def _eval_config(self, name: str) -> ArchConfig:
        if name == "smallest":
            return self.net.space.smallest()
        if name == "largest":
            return self.net.space.largest()
        return self.net.space.validate(json.loads(name))

    def _read_in_order(
        self, data: Samples, batch_size: int, indices: Sequence[int] | None = None
    ) -> list[Batch]:
        loader = make_loader(
            data,
            InOrder(len(data), batch_size, indices=indices),
            num_workers=self.num_workers if isinstance(data, LazyImages) else 0,
            device=self.device,
            target_dtype=self.task.target_dtype,
            persistent=False,
        )
        batches = []
        for inputs, targets, problems in loader:
            self.problems.check(problems)
            if len(inputs):
                batches.append((inputs, targets))
        return batches

    def _eval_batches(self) -> tuple[list[Batch], list[Batch]]:
        """Calibration and validation batches, both through the evaluation transform
        (the train split's items are evaluation views): the same every epoch, so read
        once. Calibration reads a fixed sample spread over the train split
        (:func:`~onefit.data.splits.calibration_indices`), never its first files."""
        if self._eval_cache is None:
            count = min(self.config.bn_batches, self.steps_per_epoch) * self.config.batch_size
            calibration = self._read_in_order(
                self.data.train,
                self.config.batch_size,
                calibration_indices(len(self.data.train), count, self.config.seed),
            )
            val = self._read_in_order(self.data.val, 256)
            self._eval_cache = (calibration, [self._to_device(batch) for batch in val])
        return self._eval_cache

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Accuracy/loss of the configured sub-networks after BN recalibration."""
        calibration, val = self._eval_batches()
        return {
            name: evaluate_config(
                self.net,
                self._eval_config(name),
                val,
                calibration,
                bn_batches=self.config.bn_batches,
                task=self.task,
            )
            for name in self.config.eval_configs
        }

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, *, resume: bool = True, stop_after_steps: int | None = None) -> TrainResult:
        """Train until the budget is spent, a signal arrives, or ``stop_after_steps`` more steps."""
        try:
            return self._fit(resume=resume, stop_after_steps=stop_after_steps)
        finally:
            close_loader(self.loader)

    def _fit(self, *, resume: bool, stop_after_steps: int | None) -> TrainResult:
        if resume and self.checkpoint_path.exists():
            self.restore(self.checkpoint_path)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.paths.config_file, self.resolved(), indent=2)
        limit = (
            self.total_steps
            if stop_after_steps is None
            else min(self.total_steps, self.step + stop_after_steps)
        )
        interrupted = None
        started_at = self.step
        progress = TrainProgress(enabled=self.config.progress and self.dist.is_main)
        with _StopFlag().installed() as stop, progress:
            while self.step < limit and interrupted is None:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                progress.start_epoch(epoch, self.config.epochs, self.steps_per_epoch, offset)
                clock = _EpochClock()
                self.sampler.set_epoch(epoch, offset)
                batches = iter(self.loader)
                while self.step < limit:
                    with clock.waiting():
                        batch = next(batches, None)
                    if batch is None:
                        break
                    inputs, targets, problems = batch
                    self.problems.check(problems)
                    if len(inputs) == 0:  # every sample of the batch skipped as unreadable
                        self.step += 1
                        continue
                    self.train_step(*self._to_device((inputs, targets)))
                    clock.count(len(inputs))
                    if self.step % self.config.log_every == 0:
                        progress.advance(self._flush(), clock.rates())
                    if distributed.any_true(stop.reason is not None, self.dist):
                        interrupted = stop.reason or "signal on another process"
                        break
                progress.advance(self._flush(), clock.rates())
                if self.step % self.steps_per_epoch == 0 and interrupted is None:
                    self._end_epoch(epoch, clock, progress)
            if interrupted is None and self.step < self.total_steps:
                interrupted = "stop_after_steps"
            # A finished run continued again takes no step: its checkpoint stays byte for
            # byte as it is, so searches and exports made from it (which record its
            # SHA-256) stay valid.
            checkpoint = (
                self.save()
                if self.step > started_at or not self.checkpoint_path.exists()
                else self.checkpoint_path
            )
        divergence = distributed.max_divergence(self.net, self.dist)
        if divergence != 0.0:
            raise TrainingError(
                f"processes disagree on the weights after step {self.step} "
                f"(max difference {divergence:.3g}); this is a bug, please report it"
            )
        if self.dist.active and self.dist.is_main:
            print(
                f"weights identical across {self.dist.world_size} processes after step {self.step}"
            )
        return TrainResult(
            supernet=self.net,
            run_dir=self.run_dir,
            checkpoint=checkpoint,
            steps=self.step,
            total_steps=self.total_steps,
            history=list(self.history),
            interrupted=interrupted,
        )

    def _end_epoch(self, epoch: int, clock: _EpochClock, progress: TrainProgress) -> None:
        images_per_second, data_wait = clock.rates()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": self.schedule(self.step - 1),
            # Mean over the epoch's steps; the sum of the step's task losses per step.
            "train_loss": float(np.mean(self.epoch_losses)),
            "epoch_seconds": clock.seconds(),
            # Training images read per second (this process), and the share of the
            # epoch's time spent waiting for the loader.
            "images_per_second": images_per_second,
            "data_wait_share": data_wait,
        }
        self.epoch_losses = []
        if self.dist.is_main:
            for name, metrics in self.evaluate().items():
                for key, value in metrics.items():
                    record[f"val_{name}_{key}"] = value
            with open(self.paths.metrics_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.tensorboard is not None:
                for key, value in record.items():
                    if key not in ("epoch", "step") and isinstance(value, (int, float)):
                        self.tensorboard.add_scalar(key, value, self.step)
                self.tensorboard.flush()
            progress.log_epoch(record)
        self.history.append(record)
        self.save()

    def resolved(self) -> dict[str, Any]:
        """The full resolved configuration of this run (what ``onefit train`` prints)."""
        return {
            **self.config.to_dict(),
            "supernet": self.supernet_name,
            "supernet_kwargs": self.supernet_kwargs,
            "task_settings": self.task.describe(),
            "strategy_settings": self.strategy.describe(),
            "data": self.data.describe(),
            "data_source": self.data_source,
            "preprocessing": self.data.preprocessing,
            "num_workers_used": self.num_workers,
            "precision": str(self.precision).removeprefix("torch."),
            "channels_last": self.memory_format is not None,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "world_size": self.dist.world_size,
            "device": str(self.device),
        }


class _EpochClock:
    """Wall time of an epoch, the part of it spent waiting for batches, images seen."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.waited = 0.0
        self.images = 0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.waited += time.perf_counter() - start

    def count(self, images: int) -> None:
        self.images += images

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def rates(self) -> tuple[float, float]:
        """Images per second and the data-wait share of the time so far."""
        elapsed = max(self.seconds(), 1e-9)
        return self.images / elapsed, self.waited / elapsed


def _precision(config: TrainConfig, device: torch.device) -> torch.dtype:
    """The autocast dtype: float32 off CUDA or without amp; bfloat16 where supported."""
    if not config.amp or device.type != "cuda":
        return torch.float32
    if config.amp_dtype == "float16":
        return torch.float16
    if config.amp_dtype == "bfloat16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _tensorboard_writer(folder: Path) -> Any:
    """A SummaryWriter writing to ``folder``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: pip install tensorboard (or onefit[tensorboard])
        return None
    return SummaryWriter(log_dir=str(folder))


def task_of(config: TrainConfig) -> Task:
    """The task a run trains for; classification takes the run's label smoothing."""
    kwargs = dict(config.task_kwargs)
    if config.task == "classification":
        kwargs.setdefault("label_smoothing", config.label_smoothing)
    return create_task(config.task, **kwargs)


def check_classes(data: DataSplits, model_classes: Any = None, *, built: bool = False) -> None:
    """A clear error unless a classifier of ``model_classes`` outputs (None: as many as
    the data has) fits the classes of ``data``, and the train split has two or more.

    Fewer outputs than the data's classes would fail deep inside the loss (a label
    beyond the last output); more would train outputs that no label ever asks for, and
    accuracy would be measured over classes the data does not have. One class trains
    nothing: every prediction is right and accuracy is trivially 1.0.

    Example:
        >>> import torch
        >>> from onefit.data import from_tensors
        >>> data = from_tensors(torch.zeros(10, 1, 4, 4), torch.arange(10) % 3)
        >>> check_classes(data, 3)
        >>> check_classes(data, 2)
        Traceback (most recent call last):
        ...
        onefit.errors.UserError: supernet_kwargs.num_classes=2 is smaller than the 3 classes of the data 'tensors' (labels 0..2); leave num_classes out: it comes from the data
    """  # noqa: E501
    labels = getattr(data.train, "labels", None)
    high = distinct = None
    if isinstance(labels, torch.Tensor) and labels.numel() and not labels.is_floating_point():
        high, distinct = int(labels.max()) + 1, int(labels.unique().numel())
    needed = max(data.num_classes, high or 0)
    if high is not None and high > data.num_classes:
        raise UserError(
            f"the data {data.name!r} says it has {data.num_classes} classes but its train "
            f"labels reach {high - 1}"
        )
    where = "the supernet's num_classes" if built else "supernet_kwargs.num_classes"
    fix = (
        f"build it with num_classes={needed}"
        if built
        else "leave num_classes out: it comes from the data"
    )
    if isinstance(model_classes, int) and model_classes != needed:
        relation = "smaller" if model_classes < needed else "larger"
        why = "" if model_classes < needed else ": the extra outputs would never be trained"
        raise UserError(
            f"{where}={model_classes} is {relation} than the {needed} classes of the data "
            f"{data.name!r} (labels 0..{needed - 1}){why}; {fix}"
        )
    if needed < 2 or distinct == 1:
        raise UserError(
            f"the train split of {data.name!r} has one class: accuracy would be trivially "
            "1.0; a classifier needs at least two classes"
        )


def check_supernet_instance(net: object, config: TrainConfig) -> None:
    """A clear error unless ``net`` is a onefit Supernet ready to train as ``config`` says."""
    if not isinstance(net, Supernet):
        raise UserTypeError(
            f"supernet must be a family name or a onefit Supernet, got {type(net).__name__}; "
            "make one from your nn.Module with onefit.elasticize(model, example_input)"
        )
    if config.supernet_kwargs:
        raise UserError(
            "supernet_kwargs only apply when supernet is a family name; this supernet was "
            f"passed in already built (got supernet_kwargs={config.supernet_kwargs})"
        )


def _load_initial_weights(net: Supernet, path: str) -> None:
    """Load a supernet state dict saved with ``torch.save(net.state_dict(), path)``, or
    the weights of a onefit checkpoint (its content hash verified)."""
    if is_checkpoint_file(path):
        state = load_checkpoint(path)["model"]
    else:
        state = read_state_dict(path, "init_weights")
    load_weights(net, state, path, "init_weights")


def train(
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    resume: bool = True,
    stop_after_steps: int | None = None,
    data: DataSplits | None = None,
    train_data: Samples | None = None,
    val_data: Samples | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a supernet once. Resumes from ``run_dir``'s checkpoint when there is one.

    ``config`` is a :class:`TrainConfig` or a mapping of its fields; keyword overrides
    win. ``supernet`` is a registered family's name or a :class:`Supernet` you built
    (``onefit.elasticize(your_model, example)``). ``data`` passes in-memory splits
    (``onefit.data.from_tensors``) instead of ``config.dataset``; ``train_data`` and
    ``val_data`` pass any torch ``Dataset`` of ``(input, target)`` pairs instead.
    ``stop_after_steps`` pauses after that many steps with a
    checkpoint; calling ``train`` again with the same settings continues exactly.

    Example:
        >>> import tempfile, onefit
        >>> small = {"width_mult": 0.5, "depths": [1, 2], "expand_ratios": [2, 3]}
        >>> result = onefit.train(epochs=1, batch_size=128, run_dir=tempfile.mkdtemp(),
        ...                       supernet_kwargs=small, progress=False, bn_batches=2)
        >>> result.finished, result.history[0]["epoch"], "images_per_second" in result.history[0]
        (True, 1, True)
    """
    supernet = overrides.pop("supernet", None)
    instance = supernet if isinstance(supernet, nn.Module) else None
    if supernet is not None and instance is None:
        overrides["supernet"] = supernet
    if instance is not None:
        # Recorded for the resolved settings; the instance itself is what trains.
        spec = getattr(instance, "spec", None) or {}
        overrides["supernet"] = str(spec.get("name", type(instance).__name__))
    if isinstance(config, TrainConfig):
        resolved = config.replace(**overrides) if overrides else config
    else:
        resolved = TrainConfig.from_dict({**dict(config or {}), **overrides})
    if train_data is not None or val_data is not None:
        if data is not None or train_data is None or val_data is None:
            raise UserError("pass either data=DataSplits or both train_data= and val_data=")
        data = from_datasets(train_data, val_data)
    trainer = Trainer(resolved, data, supernet=instance)  # type: ignore[arg-type]
    return trainer.fit(resume=resume, stop_after_steps=stop_after_steps)
