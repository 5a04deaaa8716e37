"""Search efficiency on the complete NAS-Bench-Macro table.

NAS-Bench-Macro (../shared/data/nas-bench-macro): all 3^8 = 6,561 architectures of an
8-layer space, each trained on CIFAR-10. Objectives: mean test accuracy (max; the
expensive metric, looked up as the "evaluation") and FLOPs (min; the cheap metric,
given to the search exactly). Because the table is complete, the true Pareto front and
its hypervolume are known.

For each strategy and seed: the number of distinct evaluations after which the
hypervolume of the feasible evaluated set reaches 95 / 98 / 99 % of the true one (both
objectives normalized to [0, 1] with the table's bounds, reference point 1), and the
search's own wall time per round (ask + bookkeeping; evaluations are table look-ups).

Usage:
    python benchmarks/search_efficiency.py [--seeds 10] [--strategies linas,nsga2,random]
        [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import onefit
from onefit.search.pareto import normalized_hypervolume, pareto_mask

TABLE = (
    Path(__file__).resolve().parents[2] / "shared/data/nas-bench-macro/nas-bench-macro_cifar10.json"
)
LEVELS = (0.95, 0.98, 0.99)
BUDGETS = {"linas": 150, "nsga2": 1500, "random": 6561, "sorted": 8, "grid": 6561}


def load_table() -> dict[str, dict[str, float]]:
    if not TABLE.is_file():
        raise SystemExit(f"{TABLE} not found: this benchmark needs ../shared/data")
    return json.loads(TABLE.read_text())


def key_of(config: onefit.ArchConfig) -> str:
    return "".join(str(config[f"l{i}"]) for i in range(8))


def evaluations_to_levels(
    history: list[onefit.search.Evaluation], lower: np.ndarray, upper: np.ndarray, true_hv: float
) -> dict[str, int | None]:
    """First evaluation count at which the evaluated set's HV reaches each level."""
    reached: dict[str, int | None] = {f"{level:.0%}": None for level in LEVELS}
    front = np.empty((0, 2))
    for count, evaluation in enumerate(history, start=1):
        if not evaluation.ok:
            continue
        point = np.array([-evaluation.metrics["accuracy"], evaluation.metrics["flops"]])
        if np.any(np.all(front <= point, axis=1)):
            continue  # dominated by (or equal to) the current front: HV unchanged
        front = np.vstack([front[~np.all(point <= front, axis=1)], point])
        hv = normalized_hypervolume(front, lower, upper)
        for level in LEVELS:
            name = f"{level:.0%}"
            if reached[name] is None and hv >= level * true_hv:
                reached[name] = count
        if all(v is not None for v in reached.values()):
            break
    return reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--strategies", default="linas,nsga2,random")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--strategy-kwargs", default="{}", help="JSON options for the strategies")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    table = load_table()
    space = onefit.SearchSpace({f"l{i}": [0, 1, 2] for i in range(8)})
    every = np.array([[-v["mean_acc"], v["flops"]] for v in table.values()])
    lower, upper = every.min(axis=0), every.max(axis=0)
    true_hv = normalized_hypervolume(every[pareto_mask(every)], lower, upper)
    print(f"{len(table)} architectures; true Pareto set {pareto_mask(every).sum()} points, "
          f"normalized HV {true_hv:.4f}")  # fmt: skip

    def evaluate(config: onefit.ArchConfig) -> dict[str, float]:
        return {"accuracy": table[key_of(config)]["mean_acc"]}

    def flops(config: onefit.ArchConfig) -> float:
        return table[key_of(config)]["flops"]

    results: dict[str, Any] = {
        "true_hv": true_hv,
        "batch_size": args.batch_size,
        "strategy_kwargs": json.loads(args.strategy_kwargs),
        "strategies": {},
    }
    for name in args.strategies.split(","):
        runs = []
        for seed in range(args.seeds):
            started = time.perf_counter()
            result = onefit.run_search(
                space, evaluate, {"accuracy": "max", "flops": "min"}, cheap={"flops": flops},
                strategy=name, budget=BUDGETS.get(name, 500), seed=seed, progress=False,
                batch_size=args.batch_size, strategy_kwargs=json.loads(args.strategy_kwargs),
            )  # fmt: skip
            wall = time.perf_counter() - started
            reached = evaluations_to_levels(result.history, lower, upper, true_hv)
            per_round = (wall - result.timings["evaluate_seconds"]) / result.timings["rounds"]
            runs.append({"seed": seed, "reached": reached, "evaluations": len(result.history),
                         "overhead_s_per_round": per_round})  # fmt: skip
            print(f"{name} seed {seed}: {reached} ({len(result.history)} evaluations, "
                  f"{per_round * 1e3:.0f} ms/round)")  # fmt: skip
        summary = {}
        for level in LEVELS:
            label = f"{level:.0%}"
            counts = [r["reached"][label] for r in runs]
            hit = [c for c in counts if c is not None]
            summary[label] = {
                "median": statistics.median(hit) if len(hit) == len(counts) else None,
                "min": min(hit) if hit else None,
                "max": max(hit) if len(hit) == len(counts) else None,
                "not_reached": len(counts) - len(hit),
            }
        overhead = [r["overhead_s_per_round"] for r in runs]
        results["strategies"][name] = {
            "summary": summary,
            "runs": runs,
            "overhead_s_per_round_median": statistics.median(overhead),
        }
        print(name, json.dumps(summary), f"overhead {statistics.median(overhead):.3f} s/round")
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
