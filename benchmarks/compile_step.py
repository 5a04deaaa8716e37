"""Does ``torch.compile`` pay for a supernet training step? Recompiles and step times.

A sandwich step runs four sub-networks, and every step samples two new random ones. A
compiled supernet is specialized on the active config (channel counts, kernel sizes,
depths are Python values its graph depends on), so each new config is a new graph. This
script trains ``--steps`` sandwich steps on the ``mobilenetv3`` supernet of
benchmarks/cifar_train.py, eager and compiled (``torch.compile(net)``, default
backend), and reports per-step times, the number of graphs compiled, and whether
compilation hit its cache limit and fell back to eager.

Usage:
    python benchmarks/compile_step.py [--steps 12] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
import torch._dynamo
import torch.nn.functional as F

import onefit
from onefit.training.strategies import create_strategy

SUPERNET = {"width_mult": 0.25, "stem_stride": 2, "stage_strides": [1, 2, 2, 1, 2]}


def run(compiled: bool, steps: int, batch: int) -> dict[str, object]:
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32, **SUPERNET)
    net.train()
    forward = torch.compile(net) if compiled else net
    strategy = create_strategy("sandwich", num_random=2)
    strategy.setup(net.space, steps)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    torch._dynamo.reset()
    times = []
    for step in range(steps):
        start = time.perf_counter()
        for task in strategy.tasks(step, np.random.default_rng([0, step])):
            net.set_active(task.config)
            F.cross_entropy(forward(x), y).backward()
        times.append(time.perf_counter() - start)
    counters = torch._dynamo.utils.counters
    return {
        "step_seconds": times,
        "median_step_seconds_after_first": statistics.median(times[1:]),
        "graphs_compiled": int(counters["stats"]["unique_graphs"]) if compiled else 0,
        # Past this many graphs for one frame, dynamo stops compiling it and runs eager.
        "recompile_limit": int(torch._dynamo.config.recompile_limit),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "eager": run(False, args.steps, args.batch_size),
        "compiled": run(True, args.steps, args.batch_size),
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
