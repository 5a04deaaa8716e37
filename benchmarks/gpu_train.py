"""One GPU, one command, under 10 minutes: the supernet's training speed on full CIFAR-10.

Measures, on the device (CUDA when present, else the CPU with a tiny budget):

1. ``step``: images/s of a sandwich step (largest, smallest, 2 random; forward +
   backward) on the supernet against the same four sub-networks as static models, in
   float32 and in bfloat16 autocast (float16 where bfloat16 is unsupported), interleaved,
   CUDA-synchronized around every timed call. Target: supernet / static <= 1.10.
2. ``epoch``: full training epochs through onefit's trainer (the ``cifar`` recipe,
   JPEGs decoded in loader workers, mixed precision, channels_last): epoch time, the
   trainer's images/s and data-wait share, and peak GPU memory.

Usage (GPU):
    python benchmarks/gpu_train.py --json gpu_train.json
Usage (CPU check of the script itself):
    python benchmarks/gpu_train.py --max-steps 2 --rounds 2 --batch-size 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import onefit
from onefit.data.loader import default_workers
from onefit.training import TrainConfig, Trainer
from onefit.training.strategies import create_strategy

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg"
# The supernet of benchmarks/cifar_train.py; --width-mult/--stem-stride make it larger.
SUPERNET = {"width_mult": 0.25, "stem_stride": 2, "stage_strides": [1, 2, 2, 1, 2]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _half_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def step_speed(
    supernet_kwargs: dict[str, Any], batch: int, rounds: int, device: torch.device
) -> dict[str, Any]:
    """Sandwich step on the supernet vs the same static sub-networks, per precision."""
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32, **supernet_kwargs)
    net = net.to(device).train()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    strategy = create_strategy("sandwich", num_random=2)
    strategy.setup(net.space, 100)
    configs = [t.config for t in strategy.tasks(0, np.random.default_rng(0))]
    statics = [net.extract(c).to(device).train().to(memory_format=memory_format) for c in configs]
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,), device=device)
    results: dict[str, Any] = {}
    for name, dtype in (("float32", None), (str(_half_dtype(device))[6:], _half_dtype(device))):

        def autocast(dtype: torch.dtype | None = dtype) -> contextlib.AbstractContextManager[Any]:
            if dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device.type, dtype=dtype)

        def supernet_step() -> None:
            for config in configs:
                net.set_active(config)
                with autocast():
                    loss = F.cross_entropy(net(x), y)
                loss.backward()

        def static_step() -> None:
            for model in statics:
                with autocast():
                    loss = F.cross_entropy(model(x), y)
                loss.backward()

        times = interleaved({"supernet": supernet_step, "static": static_step}, rounds, device)
        s, t = statistics.median(times["supernet"]), statistics.median(times["static"])
        results[name] = {
            "supernet_images_per_second": batch / s,
            "static_images_per_second": batch / t,
            "supernet_over_static": s / t,
        }
    return results


def interleaved(
    steps: dict[str, Callable[[], None]], rounds: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each step over ``rounds`` rounds, alternating which runs first
    (also used by benchmarks/input_pipeline.py)."""
    for fn in steps.values():  # warm-up: cuDNN autotuning, allocator
        fn(), fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps.items())
    for i in range(rounds):
        for name, fn in order if i % 2 == 0 else order[::-1]:
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def epochs(
    data: str,
    supernet_kwargs: dict[str, Any],
    batch: int,
    count: int,
    workers: int,
    max_steps: int | None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig(
            dataset=data, augment="cifar", supernet_kwargs=supernet_kwargs, epochs=count,
            batch_size=batch, lr=0.1, strategy="sandwich", strategy_kwargs={"num_random": 2},
            num_workers=workers, run_dir=run_dir, progress=True, tensorboard=False,
            log_every=50, bn_batches=5,
        )  # fmt: skip
        trainer = Trainer(config)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        started = time.perf_counter()
        result = trainer.fit(resume=False, stop_after_steps=max_steps)
        wall = time.perf_counter() - started
        resolved = trainer.resolved()
    out: dict[str, Any] = {
        "data": resolved["data"],
        "precision": resolved["precision"],
        "channels_last": resolved["channels_last"],
        "num_workers": resolved["num_workers_used"],
        "steps": result.steps,
        "wall_seconds": wall,
        "history": result.history,
    }
    if trainer.device.type == "cuda":
        out["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(trainer.device)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(CIFAR))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--width-mult", type=float, default=SUPERNET["width_mult"])
    parser.add_argument("--stem-stride", type=int, default=SUPERNET["stem_stride"])
    parser.add_argument("--max-steps", type=int, help="stop training after this many steps")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {**SUPERNET, "width_mult": args.width_mult, "stem_stride": args.stem_stride}
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "python": sys.version.split()[0]},
        "supernet": kwargs, "batch_size": args.batch_size,
    }  # fmt: skip
    results["step"] = step_speed(kwargs, args.batch_size, args.rounds, device)
    print(json.dumps(results["step"], indent=1))
    workers = default_workers() if args.workers is None else args.workers
    results["epochs"] = epochs(
        args.data, kwargs, args.batch_size, args.epochs, workers, args.max_steps
    )
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
