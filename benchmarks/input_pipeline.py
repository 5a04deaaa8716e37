"""Input pipeline on real CIFAR-10 JPEGs: loader throughput, data-wait share, memory.

Three measurements on ``../shared/data/cifar10-jpg`` (ImageFolder layout, 50,000 train
JPEGs), each side by side in one process:

1. ``loader``: images/s of decoding + the ``cifar`` recipe (pad-4 crop, flip, normalize)
   through onefit's loader with 0, 1 and 2 workers, against the images/s that a sandwich
   step (largest, smallest, 2 random; forward + backward) of the ``mobilenetv3``
   supernet at half width with small-input strides consumes on this machine.
2. ``train``: short training runs (``--steps`` steps, sandwich, the ``cifar`` recipe)
   with 0, 1 and 2 workers, reporting the trainer's own images/s and data-wait share
   (the share of step time spent waiting for the loader), and the elastic overhead: the
   same sandwich step's sub-networks as static models.
3. ``memory``: peak memory (proportional set size of the training process plus its
   loader workers, sampled every 50 ms) of training ``--steps`` steps on 10,000 vs 50,000 training
   images, each in a fresh process; the decoded uint8 images alone would differ by
   40,000 x 3 x 32 x 32 bytes = 123 MB.

Usage:
    python benchmarks/input_pipeline.py [--part loader,train,memory] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import onefit
from gpu_train import interleaved  # benchmarks/ is on sys.path
from onefit.data import create_recipe, load_dataset
from onefit.data.loader import EpochBatches, close_loader, make_loader
from onefit.data.prepare import training_view
from onefit.training import TrainConfig, Trainer, train
from onefit.training.strategies import create_strategy

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg"
# The supernet of benchmarks/cifar_train.py: quarter width, stride-2 stem.
SUPERNET = {"width_mult": 0.25, "stem_stride": 2, "stage_strides": [1, 2, 2, 1, 2]}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # given: no stats pass


def subset(root: Path, per_class: int, into: Path) -> Path:
    """A folder of symlinks to the first ``per_class`` train images of each class."""
    for folder in sorted((root / "train").iterdir()):
        target = into / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.iterdir())[:per_class]:
            (target / image.name).symlink_to(image)
    return into


def loader_throughput(data_root: Path, workers: list[int], batches: int, batch: int) -> dict:
    splits = load_dataset(data_root, recipe=create_recipe("cifar"), mean=MEAN, std=STD)
    view = training_view(splits, create_recipe("cifar"))
    rates: dict[str, list[float]] = {str(w): [] for w in workers}
    for repeat in range(3):  # interleaved repeats: each setting sees the same machine
        for w in workers:
            sampler = EpochBatches(len(view), batch_size=batch, seed=0)
            sampler.set_epoch(repeat)
            loader = make_loader(view, sampler, num_workers=w, device=torch.device("cpu"))
            it = iter(loader)
            next(it)  # workers started, first batch in
            start, seen = time.perf_counter(), 0
            for _ in range(batches):
                inputs, _, _ = next(it)
                seen += len(inputs)
            rates[str(w)].append(seen / (time.perf_counter() - start))
            del it, loader
    return {w: statistics.median(r) for w, r in rates.items()}


def sandwich_consumption(batch: int, rounds: int) -> dict[str, float]:
    """Images/s a sandwich step consumes, on the supernet and on the same static models."""
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32, **SUPERNET).train()
    strategy = create_strategy("sandwich", num_random=2)
    strategy.setup(net.space, 100)
    configs = [t.config for t in strategy.tasks(0, np.random.default_rng(0))]
    statics = [net.extract(c).train() for c in configs]
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def supernet_step() -> None:
        for config in configs:
            net.set_active(config)
            F.cross_entropy(net(x), y).backward()

    def static_step() -> None:
        for model in statics:
            F.cross_entropy(model(x), y).backward()

    steps = {"supernet": supernet_step, "static": static_step}
    times = interleaved(steps, rounds, torch.device("cpu"))
    s, t = statistics.median(times["supernet"]), statistics.median(times["static"])
    return {
        "supernet_step_ms": s * 1e3,
        "static_step_ms": t * 1e3,
        "elastic_overhead": s / t,
        "supernet_images_per_second": batch / s,
    }


def training_runs(data_root: Path, workers: list[int], steps: int, batch: int) -> dict:
    """Supernet steps with each number of workers, then the same steps' sub-networks as
    static models through the same loader (1 worker), then the supernet again."""
    out: dict[str, Any] = {}
    plan = [(f"supernet_{w}_workers", w, False) for w in workers]
    plan += [("static_1_workers", 1, True), ("supernet_1_workers_again", 1, False)]
    for name, w, static in plan:
        with tempfile.TemporaryDirectory() as run_dir:
            out[name] = _timed_steps(data_root, w, steps, batch, run_dir, static=static)
    supernet = statistics.median(
        [out["supernet_1_workers"]["seconds"], out["supernet_1_workers_again"]["seconds"]]
    )
    out["elastic_overhead_through_loader"] = supernet / out["static_1_workers"]["seconds"]
    return out


def _timed_steps(
    data_root: Path, workers: int, steps: int, batch: int, run_dir: str, *, static: bool
) -> dict:
    """``steps`` training steps (after one untimed), timing the wait for each batch. With
    ``static``, each step trains its sub-networks extracted as plain models instead (SGD
    on their own weights): what the same work costs without elastic layers."""
    config = TrainConfig(
        dataset=str(data_root), augment="cifar", mean=MEAN, std=STD, supernet_kwargs=SUPERNET,
        strategy_kwargs={"num_random": 2}, batch_size=batch, epochs=1, num_workers=workers,
        run_dir=run_dir, progress=False, tensorboard=False,
    )  # fmt: skip
    trainer = Trainer(config)
    step_fn = _static_steps(trainer, steps + 1) if static else trainer.train_step
    it = trainer.batches(0)
    step_fn(*next(it))  # workers started, first step's allocations made
    waited, started = 0.0, time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        inputs, targets = next(it)
        waited += time.perf_counter() - t0
        step_fn(inputs, targets)
    trainer._flush()
    elapsed = time.perf_counter() - started
    close_loader(trainer.loader)
    return {
        "seconds": elapsed,
        "images_per_second": steps * batch / elapsed,
        "data_wait_share": waited / elapsed,
    }


def _static_steps(trainer: Trainer, steps: int) -> Any:
    """A step function training, at step i, the supernet step i's sub-networks as static
    models (extracted before timing)."""
    plans = []
    for step in range(steps):
        tasks = trainer.strategy.tasks(step, np.random.default_rng([trainer.config.seed, step]))
        models = [trainer.net.extract(task.config).train() for task in tasks]
        params = [p for model in models for p in model.parameters()]
        plans.append((models, torch.optim.SGD(params, lr=0.01, momentum=0.9)))
    counter = iter(range(steps))

    def step_fn(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        models, optimizer = plans[next(counter)]
        for model in models:
            F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step_fn


# -- memory -----------------------------------------------------------------------------------


def _pss_of_tree(pid: int) -> int:
    """Proportional set size of ``pid`` and every descendant (Linux /proc): pages shared
    copy-on-write with the forked loader workers are counted once, not once per process."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            pss = next(line for line in rollup.splitlines() if line.startswith("Pss:"))
            total += int(pss.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total * 1024


def memory_child(data_root: str, steps: int, batch: int, workers: int) -> None:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _pss_of_tree(os.getpid()))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as run_dir:
        train(
            dataset=data_root, augment="cifar", supernet_kwargs=SUPERNET, batch_size=batch,
            epochs=1, num_workers=workers, run_dir=run_dir, progress=False, tensorboard=False,
            strategy_kwargs={"num_random": 2}, mean=list(MEAN), std=list(STD),
            stop_after_steps=steps,
        )  # fmt: skip
    done.set()
    thread.join()
    print(json.dumps({"peak_pss_bytes": peak[0]}))


def memory(data_roots: dict[str, Path], steps: int, batch: int, workers: int) -> dict:
    out = {}
    for name, root in data_roots.items():
        here = str(Path(__file__).parent)
        code = (
            f"import sys; sys.path.insert(0, {here!r}); import input_pipeline as b; "
            f"b.memory_child({str(root)!r}, {steps}, {batch}, {workers})"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])["peak_pss_bytes"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="loader,train,memory")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--loader-batches", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", default=str(CIFAR))
    parser.add_argument("--json")
    args = parser.parse_args()
    root, parts = Path(args.data), args.part.split(",")
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
    }  # fmt: skip
    workers = [0, 1, 2]
    if "loader" in parts:
        results["loader_images_per_second"] = loader_throughput(
            root, workers, args.loader_batches, args.batch_size
        )
        results["sandwich"] = sandwich_consumption(args.batch_size, args.rounds)
        print(json.dumps({k: results[k] for k in ("loader_images_per_second", "sandwich")}))
    if "train" in parts:
        results["training"] = training_runs(root, workers, args.steps, args.batch_size)
        print(json.dumps(results["training"]))
    if "memory" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            small = subset(root, 1000, Path(tmp) / "cifar10k" / "train")
            (small.parent / "test").symlink_to(root / "test")  # the same val split
            results["peak_pss_bytes"] = memory(
                {"10000": small.parent, "50000": root}, args.steps, args.batch_size, 1
            )
        print(json.dumps(results["peak_pss_bytes"]))
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
