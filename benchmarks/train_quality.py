"""Train once vs train alone: accuracy of extracted sub-networks per training strategy.

For each strategy, trains the ``mobilenetv3`` supernet (small-input strides) for a fixed
number of epochs on real data (the MNIST test images in ../shared/data/mnist-t10k,
split 8,000 train / 2,000 validation; scikit-learn's digits when that folder is
missing). Then, for 5 nested configs from smallest to largest, compares each extracted
sub-network's validation accuracy (after BN recalibration, no fine-tuning) with the same
architecture trained alone from scratch for the same number of epochs and the same
optimiser settings. Reports per strategy: the accuracy ratio per config, the training
compute (MACs of every forward and backward pass, backward counted as twice the forward)
relative to one training of the largest network alone, and the wall time.

Also measures the per-step overhead of the elastic layers: one sandwich step (largest,
smallest and two random sub-networks, forward + backward) on the supernet versus the
same four sub-networks as static models, interleaved.

Usage:
    python benchmarks/train_quality.py [--epochs 4] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import onefit
from onefit.data import DataSplits, load_dataset
from onefit.training import TrainConfig, Trainer, evaluate_config, evaluate_model
from onefit.training.strategies import create_strategy
from onefit.training.trainer import _param_groups, cosine_schedule

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
# Small-input MobileNetV3: stride-2 stem, then 14 -> 7 -> 4; half width.
SUPERNET = {"width_mult": 0.5, "stem_stride": 2, "stage_strides": [1, 1, 2, 1, 2]}


def load_data(source: str | None = None) -> DataSplits:
    if source is not None:
        return load_dataset(source, val_fraction=0.2, seed=0)
    if MNIST.is_dir():
        return load_dataset(MNIST, val_fraction=0.2, seed=0)
    print(f"note: {MNIST} not found; using scikit-learn's digits instead")
    return load_dataset("digits", val_fraction=0.2, seed=0)


def batches(data: DataSplits, which: str, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = data.train_tensors() if which == "train" else data.val_tensors()
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def five_configs(space: onefit.SearchSpace) -> list[onefit.ArchConfig]:
    """Five nested configs from smallest to largest.

    Walks from the smallest config to the largest, raising depth, then expand ratio,
    then kernel size by one choice at a time (each step contains the previous network),
    and keeps five evenly spaced points of that walk.
    """
    indices = dict.fromkeys(space.names, 0)
    walk = [space.from_indices(list(indices.values()))]
    while any(indices[n] < len(space[n]) - 1 for n in space.names):
        for group in ("d", "e", "ks", "r"):
            names = [n for n in space.names if n.split(".")[0] == group]
            if any(indices[n] < len(space[n]) - 1 for n in names):
                for n in names:
                    indices[n] = min(indices[n] + 1, len(space[n]) - 1)
                walk.append(space.from_indices(list(indices.values())))
    picks = np.linspace(0, len(walk) - 1, 5).round().astype(int)
    return [walk[i] for i in picks]


def training_macs(trainer: Trainer) -> int:
    """MACs of all forward and backward passes of a run (backward = 2x forward)."""
    net, strategy, config = trainer.net, trainer.strategy, trainer.config
    total = 0
    largest = net.macs(net.space.largest())
    for step in range(trainer.total_steps):
        for task in strategy.tasks(step, np.random.default_rng([config.seed, step])):
            total += 3 * net.macs(task.config)
        freeze = strategy.frozen_teacher_step
        if freeze is not None and step >= freeze:
            total += largest  # the frozen teacher's forward pass
    return total * config.batch_size


def train_alone(
    model: torch.nn.Module, data: DataSplits, config: TrainConfig, seed: int
) -> torch.nn.Module:
    """Plain supervised training of one static model with the trainer's settings."""
    torch.manual_seed(seed)
    for module in model.modules():  # fresh weights, as for a network trained from scratch
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.train()
    steps_per_epoch = len(data.train) // config.batch_size
    schedule = cosine_schedule(config.lr, config.epochs * steps_per_epoch, 0)
    optimizer = torch.optim.SGD(
        _param_groups(model, config.weight_decay),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
    )
    x_all, y_all = data.train_tensors()
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(
            len(y_all), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)
        )
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            loss = F.cross_entropy(
                model(x_all[idx]), y_all[idx], label_smoothing=config.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return model.eval()


def step_overhead(data: DataSplits, rounds: int) -> dict[str, float]:
    """Median time of a sandwich step on the supernet vs the same sub-networks as static models."""
    torch.manual_seed(0)
    net = onefit.create_supernet(
        "mobilenetv3", num_classes=data.num_classes, in_channels=data.in_channels,
        image_size=data.image_size, **SUPERNET,
    ).train()  # fmt: skip
    strategy = create_strategy("sandwich", num_random=2)
    strategy.setup(net.space, 100)
    configs = [t.config for t in strategy.tasks(0, np.random.default_rng(0))]
    statics = [net.extract(c).train() for c in configs]
    x, y = batches(data, "train", 64)[0]

    def supernet_step() -> None:
        for config in configs:
            net.set_active(config)
            F.cross_entropy(net(x), y).backward()

    def static_step() -> None:
        for model in statics:
            F.cross_entropy(model(x), y).backward()

    times: dict[str, list[float]] = {"supernet": [], "static": []}
    for _ in range(3):
        supernet_step()
        static_step()
    for i in range(rounds):
        pair = [("supernet", supernet_step), ("static", static_step)]
        for key, fn in pair if i % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1e3)
    s, t = statistics.median(times["supernet"]), statistics.median(times["static"])
    return {"supernet_step_ms": s, "static_step_ms": t, "ratio": s / t}


def run(
    data: DataSplits,
    epochs: int,
    strategies: list[str],
    batch_size: int,
    lr: float,
    strategy_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    val = batches(data, "val", 500)
    calibration = batches(data, "train", batch_size)
    base = TrainConfig(
        supernet_kwargs=SUPERNET, epochs=epochs, batch_size=batch_size, lr=lr, progress=True,
        bn_batches=10, seed=0,
    )  # fmt: skip
    results: dict[str, Any] = {
        "data": data.describe(),
        "epochs": epochs,
        "strategy_kwargs": strategy_kwargs or {},
        "strategies": {},
    }
    alone: dict[str, float] = {}
    largest_alone_macs = 0
    for strategy in strategies:
        with tempfile.TemporaryDirectory() as run_dir:
            config = base.replace(
                strategy=strategy, strategy_kwargs=strategy_kwargs or {}, run_dir=run_dir
            )
            trainer = Trainer(config, data)
            start = time.perf_counter()
            trainer.fit(resume=False)
            wall = time.perf_counter() - start
        net = trainer.net
        chain = five_configs(net.space)
        largest_alone_macs = 3 * net.macs(net.space.largest()) * batch_size * trainer.total_steps
        entry: dict[str, Any] = {
            "wall_seconds": wall,
            "compute_vs_largest_alone": training_macs(trainer) / largest_alone_macs,
            "configs": [],
        }
        for config in chain:
            key = config.to_json()
            if key not in alone:
                started = time.perf_counter()
                model = train_alone(net.extract(config), data, base, seed=0)
                alone[key] = evaluate_model(model, val)["accuracy"]
                print(f"trained alone: {net.macs(config) / 1e6:.1f} MMACs -> {alone[key]:.4f} "
                      f"({time.perf_counter() - started:.0f}s)")  # fmt: skip
            once = evaluate_config(net, config, val, calibration, bn_batches=10)["accuracy"]
            entry["configs"].append(
                {
                    "macs": net.macs(config),
                    "once": once,
                    "alone": alone[key],
                    "ratio": once / alone[key],
                }
            )
        results["strategies"][strategy] = entry
        print(json.dumps({strategy: entry}, indent=1))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--strategies", default=",".join(onefit.list_strategies()))
    parser.add_argument(
        "--strategy-kwargs",
        default="{}",
        help="JSON options for the strategies, e.g. '{\"num_random\": 4}'",
    )
    parser.add_argument("--overhead-rounds", type=int, default=20)
    parser.add_argument("--data", help="dataset name or folder (default: shared MNIST)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    data = load_data(args.data)
    results = run(
        data,
        args.epochs,
        args.strategies.split(","),
        args.batch_size,
        args.lr,
        json.loads(args.strategy_kwargs),
    )
    results["step_overhead"] = step_overhead(data, args.overhead_rounds)
    results["machine"] = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print("\nstrategy     compute  wall s  ratios (smallest .. largest)")
    for name, entry in results["strategies"].items():
        ratios = " ".join(f"{c['ratio']:.3f}" for c in entry["configs"])
        compute, wall = entry["compute_vs_largest_alone"], entry["wall_seconds"]
        print(f"{name:<12} {compute:6.2f}x {wall:7.0f}  {ratios}")
    o = results["step_overhead"]
    print(
        f"sandwich step: supernet {o['supernet_step_ms']:.1f} ms, "
        f"static {o['static_step_ms']:.1f} ms, ratio {o['ratio']:.3f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
