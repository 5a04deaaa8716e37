"""Supernet vs extracted static model: inference latency, and the time to extract.

For the smallest, a middle and the largest ``mobilenetv3`` config at 224x224 (batch 1,
eval mode, no grad), the supernet running the config and its extracted static model
are timed interleaved in one process: each round times one forward of each, in
alternating order, so drifts in machine load hit both alike. Reports medians, the
interquartile range and the supernet/static ratio of medians.

Usage:
    python benchmarks/extraction_overhead.py [--rounds 200] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
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
    with torch.inference_mode():
        for name, config in configs.items():
            extract_ms = [_time_once(lambda c=config: net.extract(c)) for _ in range(10)]
            static = net.extract(config)
            net.set_active(config)
            x = torch.randn(1, 3, 224, 224)
            for _ in range(warmup):
                net(x)
                static(x)
            super_ms, static_ms = [], []
            for i in range(rounds):
                pair = [(super_ms, net), (static_ms, static)]
                for times, model in pair if i % 2 == 0 else pair[::-1]:
                    times.append(_time_once(lambda m=model, x=x: m(x)))
            s_q, t_q = _quartiles(super_ms), _quartiles(static_ms)
            results["configs"][name] = {
                "macs": net.macs(config),
                "params": net.params(config),
                "supernet_ms": {"q1": s_q[0], "median": s_q[1], "q3": s_q[2]},
                "static_ms": {"q1": t_q[0], "median": t_q[1], "q3": t_q[2]},
                "ratio_of_medians": s_q[1] / t_q[1],
                "extract_ms_median": statistics.median(extract_ms),
            }
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
        f"{'config':<9} {'MMACs':>7} {'supernet ms (IQR)':>22} {'static ms (IQR)':>22} "
        f"{'ratio':>6} {'extract ms':>10}"
    )
    for name, r in results["configs"].items():
        s, t = r["supernet_ms"], r["static_ms"]
        print(
            f"{name:<9} {r['macs'] / 1e6:7.1f} "
            f"{s['median']:8.2f} ({s['q1']:5.2f}-{s['q3']:5.2f}) "
            f"{t['median']:8.2f} ({t['q1']:5.2f}-{t['q3']:5.2f}) "
            f"{r['ratio_of_medians']:6.3f} {r['extract_ms_median']:10.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
