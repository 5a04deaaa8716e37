"""Supernet vs extracted static model: inference latency, and the time to extract.

For the smallest, a middle and the largest ``mobilenetv3`` config at 224x224 (batch 1,
eval mode, no grad), the supernet running the config and its extracted static model
are timed interleaved in one process: each round times one forward of each, in
alternating order, so drifts in machine load hit both alike. The supernet runs twice:
as is (weights sliced and kernel-transformed on every call, as in training) and inside
``Supernet.frozen()`` (computed once per config, as in search and evaluation). Reports
medians, the interquartile range and the supernet/static ratio of medians.

Usage:
    python benchmarks/extraction_overhead.py [--rounds 200] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

import onefit


def _timer() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _time_once(fn: Callable[[], object]) -> float:
    start = _timer()
    fn()
    return (_timer() - start) * 1e3


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def middle_config(space: onefit.SearchSpace) -> onefit.ArchConfig:
    """Every dimension at its middle choice."""
    return space.from_indices([len(d) // 2 for d in space.dimensions])


def run(rounds: int, warmup: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", num_classes=1000).eval()
    configs = {
        "smallest": net.space.smallest().replace(r=224),
        "middle": middle_config(net.space).replace(r=224),
        "largest": net.space.largest(),
    }
    results: dict = {"configs": {}}
    # A second copy stays inside frozen() for the whole run, so the three models can be
    # interleaved call by call.
    frozen_net = copy.deepcopy(net)
    with torch.inference_mode(), frozen_net.frozen():
        for name, config in configs.items():
            extract_ms = [_time_once(lambda c=config: net.extract(c)) for _ in range(10)]
            models = {"supernet": net, "frozen": frozen_net, "static": net.extract(config)}
            net.set_active(config)
            frozen_net.set_active(config)
            x = torch.randn(1, 3, 224, 224)
            for _ in range(warmup):
                for model in models.values():
                    model(x)
            times: dict[str, list[float]] = {key: [] for key in models}
            keys = list(models)
            for i in range(rounds):
                # Rotate the order every round so no model always runs first.
                for key in keys[i % 3 :] + keys[: i % 3]:
                    times[key].append(_time_once(lambda m=models[key], x=x: m(x)))
            entry: dict = {"macs": net.macs(config), "params": net.params(config)}
            for key, values in times.items():
                q1, median, q3 = _quartiles(values)
                entry[f"{key}_ms"] = {"q1": q1, "median": median, "q3": q3}
            static_median = entry["static_ms"]["median"]
            entry["ratio_supernet"] = entry["supernet_ms"]["median"] / static_median
            entry["ratio_frozen"] = entry["frozen_ms"]["median"] / static_median
            entry["extract_ms_median"] = statistics.median(extract_ms)
            results["configs"][name] = entry
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": threads,
        "rounds": rounds,
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = run(args.rounds, args.warmup, args.threads)
    print(f"{results['machine']}")
    print(
        f"{'config':<9} {'MMACs':>6} {'static ms (IQR)':>21} {'supernet ms (IQR)':>21} "
        f"{'frozen ms (IQR)':>21} {'ratio':>6} {'frozen':>6} {'extract ms':>10}"
    )

    def cell(t: dict) -> str:
        return f"{t['median']:6.2f} ({t['q1']:5.2f}-{t['q3']:5.2f})"

    for name, r in results["configs"].items():
        print(
            f"{name:<9} {r['macs'] / 1e6:6.1f} {cell(r['static_ms'])} {cell(r['supernet_ms'])} "
            f"{cell(r['frozen_ms'])} {r['ratio_supernet']:6.3f} {r['ratio_frozen']:6.3f} "
            f"{r['extract_ms_median']:10.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
