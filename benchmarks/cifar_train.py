"""Train once vs train alone on CIFAR-10 JPEGs, with the ``cifar`` augmentation recipe.

The ``mobilenetv3`` supernet (reduced width, small-input strides; see ``SUPERNET``) is
trained with the sandwich rule on a class-balanced subset of ``../shared/data/
cifar10-jpg/train`` through onefit's loader (JPEGs decoded and augmented per item in
worker processes), and evaluated on the test folder (or a subset of it). Five nested
configs, smallest to largest, are extracted and evaluated after BN recalibration, and
compared with the same architectures trained alone from scratch with the same recipe,
loader, epochs, batch size and optimiser. Also trains the largest network alone
without augmentation, to show what the recipe is worth.

Compute is counted as MACs of every forward and backward pass (backward = 2x forward)
relative to one training of the largest network alone.

Usage:
    python benchmarks/cifar_train.py [--train-per-class 1000] [--epochs 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onefit.data import DataSplits
from onefit.data.loader import EpochBatches, InOrder, close_loader, make_loader
from onefit.data.prepare import training_view
from onefit.data.splits import calibration_indices
from onefit.training import TrainConfig, Trainer, evaluate_config, evaluate_model
from onefit.training.trainer import _optimizer, _param_groups, cosine_schedule
from train_quality import five_configs, training_macs  # benchmarks/ is on sys.path

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg"
# Quarter width, stride-2 stem: 32 -> 16 -> 16 -> 8 -> 4 -> 4 -> 2 (fits this CPU).
SUPERNET = {"width_mult": 0.25, "stem_stride": 2, "stage_strides": [1, 2, 2, 1, 2]}


def subset(root: Path, split: str, per_class: int, into: Path) -> None:
    """Symlinks to the first ``per_class`` images of each class of ``root/split``."""
    for folder in sorted((root / split).iterdir()):
        target = into / split / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.iterdir())[:per_class]:
            (target / image.name).symlink_to(image)


def read(
    data: Any, batch: int, workers: int, count: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``data`` in batches: all of it, or ``count`` items spread over it (calibration)."""
    indices = None if count is None else calibration_indices(len(data), count)
    loader = make_loader(data, InOrder(len(data), batch, indices=indices),
                         num_workers=workers, device=torch.device("cpu"))  # fmt: skip
    return [(x, y) for x, y, _ in loader]


def train_alone(
    model: nn.Module, data: DataSplits, config: TrainConfig, workers: int
) -> tuple[nn.Module, float]:
    """One static model trained from scratch like the supernet: same recipe, loader,
    epochs, batch size, optimiser, schedule and label smoothing."""
    torch.manual_seed(config.seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.train()
    recipe = config.recipe()
    sampler = EpochBatches(len(data.train), batch_size=config.batch_size, seed=config.seed)
    loader = make_loader(training_view(data, recipe), sampler, num_workers=workers,
                         device=torch.device("cpu"))  # fmt: skip
    total = config.epochs * sampler.steps
    schedule = cosine_schedule(config.lr, total, round(config.warmup_epochs * sampler.steps))
    optimizer = _optimizer(config, _param_groups(model, config.weight_decay))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    step, started = 0, time.perf_counter()
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        for inputs, targets, _ in loader:
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    close_loader(loader)
    return model.eval(), time.perf_counter() - started


def reused_alone(args: argparse.Namespace) -> list[tuple[float, float]] | None:
    """The (accuracy, wall seconds) of each config trained alone in ``args.alone_from``,
    refused unless it was run with the same settings (so the same data and configs)."""
    if not args.alone_from:
        return None
    previous = json.loads(Path(args.alone_from).read_text())
    ignored = {"json", "alone_from"}
    mine = {k: v for k, v in vars(args).items() if k not in ignored}
    theirs = {k: v for k, v in previous["settings"].items() if k not in ignored}
    if mine != theirs or previous["supernet"] != SUPERNET:
        raise SystemExit(f"{args.alone_from} was run with other settings: {theirs}")
    return [(row["alone"], row["alone_wall_seconds"]) for row in previous["configs"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--val-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--strategy", default="deps")
    parser.add_argument("--strategy-kwargs", default='{"num_random": 4}')
    parser.add_argument("--data", default=str(CIFAR))
    parser.add_argument("--json")
    parser.add_argument(
        "--alone-from",
        help="reuse the trained-alone figures of an earlier results file with the same "
        "settings instead of training those networks again (they do not depend on the "
        "supernet; the file is named in the results)",
    )
    args = parser.parse_args()
    earlier = reused_alone(args)
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
        "settings": vars(args), "supernet": SUPERNET,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cifar"
        subset(Path(args.data), "train", args.train_per_class, root)
        subset(Path(args.data), "test", args.val_per_class, root)
        base = TrainConfig(
            dataset=str(root), augment="cifar", supernet_kwargs=SUPERNET, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, strategy=args.strategy, seed=0,
            strategy_kwargs=json.loads(args.strategy_kwargs),
            num_workers=args.workers, bn_batches=10, progress=True, tensorboard=False,
            run_dir=str(Path(tmp) / "run"),
        )  # fmt: skip
        trainer = Trainer(base)
        data = trainer.data
        results["data"] = data.describe()
        started = time.perf_counter()
        trainer.fit(resume=False)
        results["supernet_wall_seconds"] = time.perf_counter() - started
        results["history"] = trainer.history
        net = trainer.net
        largest_macs = 3 * net.macs(net.space.largest()) * args.batch_size * trainer.total_steps
        results["compute_vs_largest_alone"] = training_macs(trainer) / largest_macs
        val = read(data.val, 500, args.workers)
        calibration = read(data.train, args.batch_size, args.workers, 10 * args.batch_size)
        rows = []
        for config in five_configs(net.space):
            once = evaluate_config(net, config, val, calibration, bn_batches=10)["accuracy"]
            if earlier is None:
                model, seconds = train_alone(net.extract(config), data, base, args.workers)
                alone = evaluate_model(model, val)["accuracy"]
            else:
                alone, seconds = earlier.pop(0)
            row = {"mmacs": net.macs(config) / 1e6, "once": once, "alone": alone,
                   "ratio": once / alone, "alone_wall_seconds": seconds}  # fmt: skip
            rows.append(row)
            print(json.dumps(row))
        results["configs"] = rows
        if args.alone_from:
            previous = json.loads(Path(args.alone_from).read_text())
            results["alone_from"] = args.alone_from
            results["largest_alone_without_augmentation"] = previous[
                "largest_alone_without_augmentation"
            ]
        else:
            # The cifar recipe evaluates as "none" does (fit to 32 px): the same splits serve.
            model, _ = train_alone(
                net.extract(net.space.largest()), data, base.replace(augment="none"), args.workers
            )
            results["largest_alone_without_augmentation"] = evaluate_model(model, val)["accuracy"]
        results["largest_alone_with_augmentation"] = rows[-1]["alone"]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
