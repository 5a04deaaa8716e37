"""Supernet vs extracted static model: inference latency, and the time to extract.

For the smallest, a middle and the largest ``mobilenetv3`` config at 224x224 (batch 1,
eval mode, no grad), the supernet running the config and its extracted static model
are timed interleaved in one process: each round times one forward of each, in
alternating order, so drifts in machine load hit both alike. The supernet runs twice:
as is (weights sliced and kernel-transformed on every call, as in training) and inside
``Supernet.frozen()`` (computed once per config, as in search and evaluation). Reports
medians, the interquartile range and the supernet/static ratio of medians.

Extraction is timed the same way, interleaved: building the static layers without
initialising their tensors (what ``extract`` does) against initialising them first
(``onefit.static.INITIALISE_EXTRACTED_LAYERS = True``, what it did before), since every
tensor is overwritten with the supernet's weights anyway.

Usage:
    python benchmarks/extraction_overhead.py [--rounds 200] [--threads 2] [--json out.json]
    python benchmarks/extraction_overhead.py --extraction-only --extract-rounds 30
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
import onefit.static


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


def _interleaved(
    a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor, rounds: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Times of ``a(x)`` and ``b(x)``, alternating which goes first each round."""
    for _ in range(warmup):
        a(x)
        b(x)
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(rounds):
        pair = [(times_a, a), (times_b, b)]
        for times, model in pair if i % 2 == 0 else pair[::-1]:
            times.append(_time_once(lambda m=model, x=x: m(x)))
    return times_a, times_b


def middle_config(space: onefit.SearchSpace) -> onefit.ArchConfig:
    """Every dimension at its middle choice."""
    return space.from_indices([len(d) // 2 for d in space.dimensions])


def _configs(net: onefit.Supernet) -> dict[str, onefit.ArchConfig]:
    return {
        "smallest": net.space.smallest().replace(r=224),
        "middle": middle_config(net.space).replace(r=224),
        "largest": net.space.largest(),
    }


def time_extraction(net: onefit.Supernet, config: onefit.ArchConfig, rounds: int) -> dict:
    """Median ms of ``extract(config)`` without and with initialising the new layers,
    interleaved (alternating which goes first), after one warm-up of each."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(rounds + 1):
        for initialise in (False, True) if i % 2 == 0 else (True, False):
            onefit.static.INITIALISE_EXTRACTED_LAYERS = initialise
            took = _time_once(lambda: net.extract(config))
            if i > 0:
                times[initialise].append(took)
    onefit.static.INITIALISE_EXTRACTED_LAYERS = False
    skip, init = (statistics.median(times[k]) for k in (False, True))
    return {"extract_ms_median": skip, "extract_initialised_ms_median": init,
            "extract_ratio": skip / init}  # fmt: skip


def run_extraction(rounds: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", num_classes=1000).eval()
    with torch.inference_mode():
        configs = {name: time_extraction(net, c, rounds) for name, c in _configs(net).items()}
    return {"configs": configs, "machine": _machine(threads, rounds)}


def _machine(threads: int, rounds: int) -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": threads,
        "rounds": rounds,
    }


def run(rounds: int, warmup: int, threads: int, extract_rounds: int = 10) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", num_classes=1000).eval()
    configs = _configs(net)
    results: dict = {"configs": {}}
    # The frozen supernet is a second copy that stays inside frozen() for the whole run.
    frozen_net = copy.deepcopy(net)
    with torch.inference_mode(), frozen_net.frozen():
        for name, config in configs.items():
            extraction = time_extraction(net, config, extract_rounds)
            static = net.extract(config)
            net.set_active(config)
            frozen_net.set_active(config)
            x = torch.randn(1, 3, 224, 224)
            entry: dict = {"macs": net.macs(config), "params": net.params(config)}
            # Two interleaved pairs, each against the static model, rather than three
            # models at once: three copies of the weights crowd the caches.
            for key, supernet in (("supernet", net), ("frozen", frozen_net)):
                times = _interleaved(supernet, static, x, rounds, warmup)
                for side, values in zip((key, f"static_vs_{key}"), times):
                    q1, median, q3 = _quartiles(values)
                    entry[f"{side}_ms"] = {"q1": q1, "median": median, "q3": q3}
                entry[f"ratio_{key}"] = (
                    entry[f"{key}_ms"]["median"] / entry[f"static_vs_{key}_ms"]["median"]
                )
            entry["static_ms"] = entry["static_vs_supernet_ms"]
            entry.update(extraction)
            results["configs"][name] = entry
    results["machine"] = _machine(threads, rounds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--extract-rounds", type=int, default=10)
    parser.add_argument(
        "--extraction-only",
        action="store_true",
        help="only time extraction, without and with initialising layers",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.extraction_only:
        results = run_extraction(args.extract_rounds, args.threads)
        print(results["machine"])
        print(f"{'config':<9} {'extract ms':>10} {'initialised ms':>14} {'ratio':>6}")
        for name, r in results["configs"].items():
            print(
                f"{name:<9} {r['extract_ms_median']:10.1f} "
                f"{r['extract_initialised_ms_median']:14.1f} {r['extract_ratio']:6.3f}"
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return
    results = run(args.rounds, args.warmup, args.threads, args.extract_rounds)
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
