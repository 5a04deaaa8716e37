"""Latency prediction on this CPU: lookup table vs learned predictors; zero-cost proxies.

Part 1 (latency): measures N seeded random ``mobilenetv3`` sub-networks (Once-for-All
space, width 1.0, 1000 classes, 224x224, batch 1) whole on each runtime (ONNX Runtime and
PyTorch eager) in interleaved rounds (each round times every config once, in a shuffled
order; the truth is the median over rounds, and the agreement of even and odd rounds is
the ceiling for any predictor), builds the runtime's latency lookup
table, and predicts the second half of the configs from (a) the table alone, (b) the
table with a linear calibration fitted on the first half, and (c) learned predictors
trained on the first half: one-hot encoding + analytic MACs, with and without the
table's prediction as a feature. Reports MAPE, Kendall tau and the share within ±10 %
on the held-out half, and the profiling time.

Part 2 (proxies, with ``--run RUN_DIR`` of a trained supernet): for 50 seeded random
sub-networks, validation accuracy after BN recalibration against each zero-cost proxy
(one training batch of 64), as Kendall tau.

Usage:
    python benchmarks/latency_prediction.py [--configs 100] [--threads 1] [--run RUN_DIR]
        [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import track
from scipy.stats import kendalltau

import onefit
from onefit.metrics import get_runtime
from onefit.metrics.latency import time_runs, torch_threads
from onefit.metrics.proxies import compute_proxies, list_proxies
from onefit.predictors import fit_predictor, prediction_metrics
from onefit.profiling import build_latency_table
from onefit.training import evaluate_config

SUPERNET = {"num_classes": 1000, "image_size": 224, "resolutions": [224]}


def measure_interleaved(
    net: Any, configs: list[onefit.ArchConfig], runtime: str, threads: int, warmup: int,
    rounds: int,
) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    """Per-config median latency over ``rounds`` rounds, each timing every config once.

    Round-robin timing spreads the machine's drift over all configs alike instead of
    charging it to whichever config ran during a slow spell. Also returns the medians
    of the even and of the odd rounds: their agreement is the measurement's own ceiling.
    """
    backend = get_runtime(runtime)
    runs = []
    with torch_threads(threads):
        for config in track(configs, description=f"{runtime}: preparing"):
            example = torch.randn(1, *net.input_shape(config))
            run = backend.prepare(net.extract(config), example, "cpu", threads)
            time_runs(run, "cpu", warmup, 0)
            runs.append(run)
        samples = np.zeros((rounds, len(configs)))
        for r in track(range(rounds), description=f"{runtime}: {rounds} interleaved rounds"):
            for i in np.random.default_rng(r).permutation(len(configs)):
                samples[r, i] = time_runs(runs[i], "cpu", 0, 1)[0]
    median = np.median(samples, axis=0)
    return (
        median.tolist(),
        np.median(samples[0::2], 0).tolist(),
        np.median(samples[1::2], 0).tolist(),
    )


def latency_part(
    runtime: str, configs: list[onefit.ArchConfig], threads: int, warmup: int, repeats: int,
    lut_repeats: int,
) -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", **SUPERNET).eval()
    timing = {"runtime": runtime, "threads": threads, "warmup": warmup, "repeats": repeats}
    started = time.perf_counter()
    table = build_latency_table(net, **{**timing, "repeats": lut_repeats})  # type: ignore[arg-type]
    table_seconds = time.perf_counter() - started

    started = time.perf_counter()
    measured, even, odd = measure_interleaved(net, configs, runtime, threads, warmup, repeats)
    measure_seconds = time.perf_counter() - started
    retest = prediction_metrics(even, odd)

    half = len(configs) // 2
    train, test = configs[:half], configs[half:]
    y_train, y_test = np.array(measured[:half]), np.array(measured[half:])
    methods: dict[str, Any] = {"lut": prediction_metrics(y_test, table.predict_many(test))}
    table.calibrate(train, y_train)
    methods["lut, calibrated on the 50"] = prediction_metrics(y_test, table.predict_many(test))
    macs = {"macs": lambda c: net.macs(c) / 1e6}
    with_table = {**macs, "lut_ms": table.predict}
    for label, extra in (
        ("learned (onehot+macs)", macs),
        ("learned (onehot+macs+lut)", with_table),
    ):
        for method in ("ridge", "svr", "gbt", "mlp"):
            predictor = fit_predictor(
                net.space, train, y_train, method=method, extra_features=extra
            )
            methods[f"{label} {method}"] = predictor.evaluate(test, y_test)
    return {
        "runtime": runtime,
        "profile": table.profile.to_dict(),
        "units": len(table.entries),
        "lut_repeats": lut_repeats,
        "call_overhead_ms": table.call_overhead_ms,
        "calibration": table.settings["calibration"],
        "lut_seconds": table_seconds,
        "measure_seconds": measure_seconds,
        "measured_ms": {
            "min": min(measured),
            "median": float(np.median(measured)),
            "max": max(measured),
        },
        "test_retest": retest,
        "methods": methods,
    }


def proxies_part(run_dir: str, samples: int) -> dict[str, Any]:
    net = onefit.load_supernet(run_dir)
    settings = json.loads((Path(run_dir) / "config.json").read_text())
    data = onefit.load_dataset(
        settings["dataset"], val_fraction=settings["val_fraction"], seed=settings["seed"]
    )  # the split the run trained and validated on
    x_train, y_train = data.train_tensors()
    x_val, y_val = data.val_tensors()
    calibration = [(x_train[i : i + 128], y_train[i : i + 128]) for i in range(0, 1280, 128)]
    val = [(x_val[i : i + 500], y_val[i : i + 500]) for i in range(0, len(y_val), 500)]
    batch = (x_train[:64], y_train[:64])
    rows = []
    for config in track(net.space.sample_many(samples, seed=0), description="proxies"):
        accuracy = evaluate_config(net, config, val, calibration, bn_batches=10)["accuracy"]
        scores = compute_proxies(net.extract(config), *batch)
        rows.append({"accuracy": accuracy, **scores})
    accuracy = [r["accuracy"] for r in rows]
    taus = {name: float(kendalltau(accuracy, [r[name] for r in rows]).statistic)
            for name in list_proxies()}  # fmt: skip
    return {"run": run_dir, "samples": samples, "accuracy_range": [min(accuracy), max(accuracy)],
            "kendall_tau": taus, "rows": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40, help="interleaved rounds")
    parser.add_argument("--lut-repeats", type=int, default=100)
    parser.add_argument("--runtimes", default="onnxruntime,eager")
    parser.add_argument("--run", help="run dir of a trained supernet, for the proxy part")
    parser.add_argument("--proxy-samples", type=int, default=50)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    net = onefit.create_supernet("mobilenetv3", **SUPERNET)
    configs = net.space.sample_many(args.configs, seed=0)
    results: dict[str, Any] = {"configs": args.configs, "latency": [], "machine": {
        "platform": platform.platform(), "processor": platform.processor(),
        "torch": torch.__version__}}  # fmt: skip
    for runtime in [r for r in args.runtimes.split(",") if r]:
        part = latency_part(runtime, configs, args.threads, args.warmup, args.repeats,
                            args.lut_repeats)  # fmt: skip
        results["latency"].append(part)
        span = f"{part['measured_ms']['min']:.1f}-{part['measured_ms']['max']:.1f} ms"
        print(
            f"\n{runtime}: {part['units']} units profiled in {part['lut_seconds']:.0f} s; "
            f"{args.configs} sub-networks measured in {part['measure_seconds']:.0f} s ({span})"
        )
        r = part["test_retest"]
        print(
            f"test-retest (even vs odd rounds): MAPE {r['mape']:.2f} %, tau {r['kendall_tau']:.3f}"
        )
        print(f"{'method':<42} {'MAPE %':>7} {'tau':>6} {'±10 %':>6}")
        for name, m in part["methods"].items():
            print(f"{name:<42} {m['mape']:7.2f} {m['kendall_tau']:6.3f} {m['within_10pct']:6.2f}")
    if args.run:
        results["proxies"] = proxies_part(args.run, args.proxy_samples)
        print("\nzero-cost proxy vs accuracy, Kendall tau:", results["proxies"]["kendall_tau"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
