"""Built-in evaluators for searching a trained supernet, and the search over a run.

Metrics a supernet search can use:

- ``accuracy`` and ``loss`` (expensive): the extracted sub-network on the validation
  split after batch-norm recalibration on training batches;
- ``macs`` and ``params`` (cheap, exact): the analytic counts;
- ``latency_ms`` (cheap, predicted): from a latency lookup table built for this
  supernet (``onefit profile``), recorded as ``predicted`` with the table's profile;
- ``measured_latency_ms`` (expensive): the sub-network timed on a runtime, recorded as
  ``measured`` with its device profile;
- ``peak_memory_bytes`` (expensive, ``measure_memory=True``): weights + input + peak
  live activations of one eager inference (see :mod:`onefit.metrics.memory`).

Example:
    >>> import onefit, tempfile
    >>> run = tempfile.mkdtemp()
    >>> _ = onefit.train(epochs=1, run_dir=run, progress=False, strategy="sorted",
    ...                  supernet_kwargs={"depths": [1, 2], "kernel_sizes": [3],
    ...                                   "expand_ratios": [3], "width_mult": 0.5})
    >>> result = search_run(run, {"accuracy": "max", "macs": "min"}, budget=4,
    ...                     strategy="random", progress=False)
    >>> len(result.history), all(0 <= e.metrics["accuracy"] <= 1 for e in result.history)
    (4, True)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from onefit.data import DataSplits, create_recipe, load_dataset
from onefit.errors import UserError
from onefit.metrics.device import DeviceProfile
from onefit.metrics.latency import measure_latency
from onefit.metrics.memory import peak_memory
from onefit.profiling.lut import LatencyTable, LatencyTableError
from onefit.rundir import RunDir
from onefit.search.constraints import ConstraintFn
from onefit.search.runner import SearchResult, search
from onefit.search.store import SearchOrigin
from onefit.search.strategies.base import CheapFn
from onefit.space import ArchConfig
from onefit.supernets import Supernet
from onefit.tasks import Classification, Task, create_task
from onefit.training.checkpoint import load_supernet
from onefit.training.evaluate import evaluate_config

# Batch size of BN recalibration and evaluation; export uses the same, so a model card's
# accuracy is the one the search saw.
CALIBRATION_BATCH = 256


def run_data(run_dir: str | Path) -> DataSplits:
    """The data split a training run used (from its ``config.json``)."""
    settings = RunDir(run_dir).settings()
    if settings.get("data_source") == "memory":
        raise UserError(
            f"{run_dir} was trained on data passed in memory ({settings.get('data')}), which "
            "onefit cannot reload; pass the same data again (data=...)"
        )
    # The same items as training evaluated on: its recipe's evaluation transform and its
    # recorded statistics (a lazy dataset's sampled ones are not sampled again).
    recorded: Mapping[str, Any] = settings.get("preprocessing") or {}  # type: ignore[assignment]
    augment_kwargs: Mapping[str, Any] = settings.get("augment_kwargs") or {}  # type: ignore[assignment]
    return load_dataset(
        str(settings["dataset"]),
        val_fraction=float(settings["val_fraction"]),  # type: ignore[arg-type]
        seed=int(settings["seed"]),  # type: ignore[call-overload]
        image_size=settings.get("image_size"),  # type: ignore[arg-type]
        recipe=create_recipe(str(settings.get("augment", "none")), **augment_kwargs),
        mean=recorded.get("mean") or None,
        std=recorded.get("std") or None,
    )


def run_task(run_dir: str | Path) -> Task:
    """The task a training run trained for (from its ``config.json``)."""
    settings = RunDir(run_dir).settings()
    kwargs = settings.get("task_kwargs") or {}
    return create_task(str(settings.get("task", "classification")), **dict(kwargs))  # type: ignore[call-overload]


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` cut into consecutive batches of ``size`` (the last may be shorter)."""
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def _check_table(table: LatencyTable, net: Supernet) -> None:
    spec = json.loads(json.dumps(getattr(net, "spec", None)))
    if json.loads(json.dumps(table.supernet)) != spec:
        raise LatencyTableError(
            f"the latency table was built for {table.supernet}, not this supernet ({spec}); "
            f"build one for it with: onefit profile --run RUN_DIR"
        )


def supernet_search(
    net: Supernet,
    data: DataSplits,
    objectives: Mapping[str, str],
    *,
    constraints: Sequence[str | ConstraintFn] | None = None,
    latency_table: LatencyTable | None = None,
    measure_runtime: str | None = None,
    measure_memory: bool = False,
    bn_batches: int = 10,
    batch_size: int = CALIBRATION_BATCH,
    task: Task | None = None,
    **search_kwargs: Any,
) -> SearchResult:
    """Search a trained supernet's sub-networks (metrics as in the module docstring).

    ``task`` (default classification) says which metrics an evaluation returns: its
    ``metrics`` (accuracy, top5, loss; mse, mae for regression...)."""
    task = task or Classification()
    if measure_runtime is not None or measure_memory:
        net.require_images("measuring latency or memory")
    x_train, y_train = data.train_tensors(limit=bn_batches * batch_size)
    x_val, y_val = data.val_tensors()
    calibration = batches(x_train, y_train, batch_size)[:bn_batches]
    validation = batches(x_val, y_val, batch_size)
    cheap: dict[str, CheapFn] = {"macs": net.macs, "params": net.params}
    kinds: dict[str, str] = {}
    profiles: dict[str, dict[str, Any]] = {}
    if latency_table is not None:
        _check_table(latency_table, net)
        cheap["latency_ms"] = latency_table.predict
        kinds["latency_ms"] = "predicted"
        profiles["latency_ms"] = latency_table.profile.to_dict()

    def evaluate(config: ArchConfig) -> dict[str, float]:
        metrics = evaluate_config(
            net, config, validation, calibration, bn_batches=bn_batches, task=task
        )
        if measure_runtime is not None:
            timed = measure_latency(net.extract(config), net.input_shape(config),
                                    runtime=measure_runtime)  # fmt: skip
            metrics["measured_latency_ms"] = timed.median_ms
        if measure_memory:
            memory = peak_memory(net.extract(config), net.input_shape(config))
            metrics["peak_memory_bytes"] = float(memory.peak_bytes)
        return metrics

    returned = [*task.metrics] + (["measured_latency_ms"] if measure_runtime else [])
    returned += ["peak_memory_bytes"] if measure_memory else []
    if measure_runtime is not None:
        profiles["measured_latency_ms"] = DeviceProfile.detect(runtime=measure_runtime).to_dict()
    unknown = set(objectives) - set(cheap) - set(returned)
    if unknown:
        raise UserError(
            f"unknown objective(s) {sorted(unknown)}; known metrics: {sorted({*cheap, *returned})}"
            + " (latency_ms needs a latency table, --lut; measured_latency_ms needs "
            "--measure-runtime; peak_memory_bytes needs --measure-memory)"
        )
    return search(net.space, evaluate, objectives, cheap=cheap, constraints=constraints,
                  metrics=returned, metric_kinds=kinds, metric_profiles=profiles,
                  **search_kwargs)  # fmt: skip


def search_run(
    run_dir: str | Path,
    objectives: Mapping[str, str],
    *,
    latency_table: str | Path | LatencyTable | None = None,
    supernet: Supernet | None = None,
    data: DataSplits | None = None,
    latency_profile: DeviceProfile | None = None,
    **kwargs: Any,
) -> SearchResult:
    """:func:`supernet_search` on the trained supernet, data and task of ``run_dir``.

    ``latency_profile``: the target device profile; a latency table measured under
    another one is refused (:meth:`LatencyTable.check_profile`).

    ``supernet`` and ``data`` are needed only for runs trained on objects onefit cannot
    rebuild (a supernet instance without a recipe, Datasets passed in memory).
    """
    net = load_supernet(run_dir, supernet=supernet)
    table = latency_table
    if isinstance(table, (str, Path)):
        table = LatencyTable.load(table, net=net, profile=latency_profile)
    elif table is not None and latency_profile is not None:
        table.check_profile(latency_profile)
    data = data if data is not None else run_data(run_dir)
    # The store records which run and weights it evaluated (read back by load_search).
    kwargs.setdefault("origin", SearchOrigin.of_run(run_dir))
    return supernet_search(
        net, data, objectives, latency_table=table, task=run_task(run_dir), **kwargs
    )
