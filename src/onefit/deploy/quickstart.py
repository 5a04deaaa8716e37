"""The quickstart behind ``onefit demo``: the whole pipeline on the embedded digits data.

train a small supernet → build this CPU's latency table (ONNX Runtime, calibrated on a
few whole sub-networks) → search accuracy against latency → export the smallest, the
knee and the most accurate Pareto sub-networks as ONNX with model cards → write the
report. Every stage writes into the run directory, and running it again resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from onefit.deploy.export import ExportResult, export
from onefit.deploy.report import write_report
from onefit.errors import Interrupted
from onefit.metrics.device import DeviceProfile, ProfileMismatchError
from onefit.metrics.latency import measure_latency
from onefit.profiling.lut import LatencyTable, build_latency_table
from onefit.search.store import SearchOrigin
from onefit.search.supernet import run_data, supernet_search
from onefit.training.checkpoint import load_supernet
from onefit.training.trainer import train

# Small enough to train in about a minute on 2 CPU cores, large enough to have a front.
DEMO_SUPERNET = {
    "width_mult": 0.5,
    "depths": [1, 2, 3],
    "kernel_sizes": [3, 5],
    "expand_ratios": [2, 3, 4],
}
PICKS = ("smallest", "knee", "most-accurate")


class DemoInterrupted(Interrupted, RuntimeError):
    """Training was interrupted (Ctrl-C): the later stages must not use its weights."""


@dataclass
class DemoSettings:
    run_dir: str = "runs/demo"
    # Digits saturate near 99 % for most sub-networks after ~10 epochs, which leaves a
    # two-point front; 6 epochs keep a visible trade-off and a run under two minutes.
    epochs: int = 6
    budget: int = 30
    threads: int = 1
    calibration_configs: int = 8
    progress: bool = True


def _latency_table(run_dir: Path, settings: DemoSettings, console: Console) -> LatencyTable:
    path = run_dir / "latency_table.json"
    net = load_supernet(run_dir)
    if path.is_file():
        # A table measured under another profile (other threads, libraries, machine) would
        # predict latencies of another device: refused, naming both profiles.
        # Its search results are tied to it too, so the demo does not rebuild it: it says
        # how to run the demo again as measured, or afresh for this profile.
        here = DeviceProfile.detect(runtime="onnxruntime", threads=settings.threads)
        try:
            return LatencyTable.load(path, net=net, profile=here)
        except ProfileMismatchError as error:
            raise ProfileMismatchError(
                f"{error}. The demo in {run_dir} measured its latency and searched under "
                "that profile: run it again with the same --threads on the same machine "
                "and libraries, or with another --run-dir to measure and search here"
            ) from None
    table = build_latency_table(
        net,
        runtime="onnxruntime",
        threads=settings.threads,
        warmup=3,
        repeats=30,
        progress=settings.progress,
    )
    configs = [
        net.space.smallest(),
        net.space.largest(),
        *net.space.sample_many(settings.calibration_configs - 2, seed=0),
    ]
    measured = [
        measure_latency(
            net.extract(c),
            net.input_shape(c),
            runtime="onnxruntime",
            threads=settings.threads,
            warmup=5,
            repeats=30,
        ).median_ms
        for c in configs
    ]
    fit = table.calibrate(configs, measured)
    table.save(path)
    console.print(
        f"latency table: {len(table.entries)} units, calibrated on {len(configs)} "
        f"whole sub-networks (scale {fit['scale']:.2f}, offset {fit['offset']:.3f} ms)"
    )
    return table


def run_demo(
    settings: DemoSettings | None = None, console: Console | None = None
) -> list[ExportResult]:
    """Run (or resume) the quickstart; returns the three exports."""
    settings = settings or DemoSettings()
    console = console or Console()
    run_dir = Path(settings.run_dir)
    console.rule("1/5 train a supernet on the digits data (embedded, no download)")
    trained = train(
        dataset="digits",
        supernet="mobilenetv3",
        supernet_kwargs=DEMO_SUPERNET,
        strategy="sandwich",
        epochs=settings.epochs,
        batch_size=64,
        lr=0.1,
        run_dir=str(run_dir),
        progress=settings.progress,
        tensorboard=False,
    )
    if trained.interrupted:
        raise DemoInterrupted(
            f"training paused at step {trained.steps}/{trained.total_steps} "
            f"({trained.interrupted}); run the same command to continue"
        )
    console.rule("2/5 measure this CPU: latency table on ONNX Runtime")
    table = _latency_table(run_dir, settings, console)
    console.rule("3/5 search accuracy vs latency")
    net = load_supernet(run_dir)
    result = supernet_search(
        net,
        run_data(run_dir),
        {"accuracy": "max", "latency_ms": "min"},
        latency_table=table,
        strategy="linas",
        budget=settings.budget,
        store=run_dir / "search" / "results.db",
        origin=SearchOrigin.of_run(run_dir),
        progress=settings.progress,
    )
    console.print(
        f"{len(result.history)} sub-networks evaluated, {len(result.pareto)} on the Pareto front"
    )
    console.rule("4/5 export three Pareto sub-networks as ONNX with model cards")
    exports = [export(run_dir, choice, format="onnx", threads=settings.threads) for choice in PICKS]
    console.rule("5/5 report")
    page = write_report(run_dir)
    _summary(exports, page, console)
    return exports


def _summary(exports: list[ExportResult], page: Path, console: Console) -> None:
    table = Table(title="exported sub-networks: validation accuracy, ONNX Runtime latency here")
    for column in ("pick", "accuracy", "ms (IQR)", "MMACs", "folder"):
        table.add_column(column, justify="right", no_wrap=True)
    for e in exports:
        card = e.card
        # The demo exports ONNX: the figure of the file itself, measured in ONNX Runtime.
        figure = card.evaluation.onnx_fp32
        table.add_row(
            card.pick,
            f"{figure:.4f}" if figure is not None else "-",
            f"{card.latency.median_ms:.3f} ({card.latency.iqr_ms:.3f})",
            f"{card.macs / 1e6:.2f}",
            e.folder.name,
        )
    console.print(table)
    folder = exports[0].folder.parent if exports else page.parent
    console.print(f"models and model cards in {folder}/; report: {page}")
