"""Export a picked sub-network as a deployable file with a model card of measured figures.

Steps: load the trained supernet and its data split; choose the config (see
:mod:`onefit.deploy.picks`); recalibrate batch norm for that config on training batches;
extract the static model and check it computes what the supernet computes; measure its
accuracy, parameters, MACs and latency; write the model and ``model_card.json``.

Formats:

- ``pt``: a dict with the state dict, the config and the supernet it came from, loadable
  with ``torch.load(weights_only=True)``; :func:`load_exported` rebuilds the module;
- ``torchscript``: ``torch.jit.script`` of the model (runs without onefit);
- ``onnx``: ONNX (opset 17, any batch size), checked against PyTorch in ONNX Runtime;
  with ``int8=True`` also ONNX Runtime static quantization (QDQ, per-channel weights)
  calibrated on training batches, with its accuracy and latency.

Example:
    >>> import onefit, tempfile
    >>> run = tempfile.mkdtemp()
    >>> _ = onefit.train(epochs=1, run_dir=run, progress=False, strategy="sorted",
    ...                  supernet_kwargs={"depths": [1], "kernel_sizes": [3],
    ...                                   "expand_ratios": [3], "width_mult": 0.5})
    >>> net = onefit.load_supernet(run)
    >>> result = export(run, dict(net.space.smallest()), format="pt", latency_repeats=3)
    >>> card = result.card  # a ModelCard, also in result.folder / "model_card.json"
    >>> card.macs == net.macs(net.space.smallest()), card.format, card.evaluation.metric
    (True, 'pt', 'accuracy')
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import uuid

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; cleaners remove every work folder
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from onefit.data import DataSplits
from onefit.deploy.card import (
    CARD_FILE,
    Checks,
    Evaluation,
    InputSpec,
    Latency,
    ModelCard,
    Preprocessing,
    file_sha256,
)
from onefit.deploy.picks import NAMED_PICKS, SearchRecord, load_search, pick
from onefit.errors import OnefitError, UserError
from onefit.files import fsync_dir
from onefit.metrics.device import DeviceProfile
from onefit.metrics.latency import (
    LatencyResult,
    check_timing_settings,
    measure_latency,
    time_runs,
    torch_threads,
)
from onefit.metrics.runtimes.onnx_runtime import OnnxRuntime, export_onnx
from onefit.rundir import DEFAULT_SEARCH, RunDir
from onefit.search.runner import SearchResult
from onefit.search.supernet import CALIBRATION_BATCH, batches, run_data, run_task
from onefit.space import ArchConfig
from onefit.supernets import Supernet, rebuild_supernet
from onefit.tasks import Task
from onefit.training.bn import recalibrate_bn, resize
from onefit.training.checkpoint import load_supernet
from onefit.training.evaluate import evaluate_model
from onefit.version import __version__

FORMATS = ("pt", "torchscript", "onnx")
FILE_NAMES = {"pt": "model.pt", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
EXPORT_FORMAT = "onefit-export/1"
# Largest |supernet - exported| allowed on the same input, for outputs of order one;
# larger outputs scale it (float32 rounding grows with the values): see tolerance_for.
TOLERANCE = 1e-4


def tolerance_for(outputs: torch.Tensor) -> float:
    """The largest difference accepted from ``outputs``: ``TOLERANCE`` times their scale
    (at least 1). Logits of 30 differ between runtimes by more than logits of 1 do.

    Example:
        >>> tolerance_for(torch.tensor([0.5, -2.0]))
        0.0002
    """
    scale = float(outputs.detach().abs().max())
    return TOLERANCE * max(1.0, scale) if math.isfinite(scale) else TOLERANCE


def _preprocessing(data: DataSplits, resolution: int) -> Preprocessing:
    """The card's preprocessing: what the data recorded of its recipe and statistics."""
    record = data.preprocessing
    defaults = Preprocessing(resize_to=(resolution, resolution), divide_by=1, mean=(), std=())
    return Preprocessing(
        resize_to=(resolution, resolution),
        divide_by=data.divisor,
        mean=data.mean,
        std=data.std,
        eval_transform=str(record.get("eval_transform", defaults.eval_transform)),
        statistics=str(record.get("statistics", defaults.statistics)),
        training_recipe=dict(record.get("recipe", defaults.training_recipe)),
    )


class ExportError(UserError):
    """The export cannot be made as asked (unknown format, --int8 without ONNX...)."""


class ExportCheckError(OnefitError, RuntimeError):
    """An exported model failed a check (it does not compute what the supernet does)."""


@dataclass
class ExportResult:
    """Where an export went, and its model card (also in ``folder / "model_card.json"``)."""

    folder: Path
    model_path: Path
    card: ModelCard


def _slug(label: str, config: ArchConfig) -> str:
    """A folder name for a pick: operators spelled out; a config pick gets a hash."""
    if label == "config":
        return "config-" + hashlib.sha1(config.to_json().encode()).hexdigest()[:8]
    for op, word in (("<=", "le"), (">=", "ge"), ("<", "lt"), (">", "gt")):
        label = label.replace(op, f" {word} ")
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-") or "pick"


def prepare_model(
    net: Supernet, config: ArchConfig, data: DataSplits, bn_batches: int
) -> tuple[nn.Module, float]:
    """Recalibrated static model of ``config`` and its max |difference| from the supernet."""
    resolution = int(config["r"])
    x_train, y_train = data.train_tensors(limit=bn_batches * CALIBRATION_BATCH)
    net.set_active(config)
    # Recalibrate in the supernet, so the supernet and the export share the statistics.
    recalibrate_bn(
        net,
        batches(x_train, y_train, CALIBRATION_BATCH),
        num_batches=bn_batches,
        resolution=resolution,
    )
    model = net.extract(config)
    x_val, _ = data.val_tensors()
    probe = resize(x_val[:16], resolution)
    with torch.no_grad():
        reference = net.eval()(probe)
        difference = float((reference - model(probe)).abs().max())
    if not difference <= tolerance_for(reference):  # NaN fails too
        raise ExportCheckError(
            f"exported model differs from the supernet by {difference:.2e} "
            f"(accepted: {tolerance_for(reference):.2e})"
        )
    return model, difference


def load_exported(path: str | Path) -> nn.Module:
    """Rebuild a model saved with ``format="pt"`` (needs onefit; TorchScript/ONNX do not).

    Read with ``torch.load(weights_only=True)`` (never runs code). When the export's
    ``model_card.json`` is beside it, the file's SHA-256 must be the card's: a damaged or
    edited model is a :class:`~onefit.deploy.card.ModelCardError` naming the file.
    """
    path = Path(path)
    card_path = path.parent / CARD_FILE
    if card_path.is_file():
        card = ModelCard.load(card_path)
        if path.name in card.files.values():
            card.verify_files(path.parent)
    if not path.is_file():
        raise ExportError(f"{path}: no such exported model file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors of many kinds: one clear message
        raise ExportError(
            f"{path} is not a onefit export ({EXPORT_FORMAT}): cannot read it "
            f"({type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path} is not a onefit export ({EXPORT_FORMAT})")
    for key, kind in (("supernet", dict), ("config", str), ("state_dict", dict)):
        if not isinstance(state.get(key), kind):
            raise ExportError(f"{path}: onefit export has no {key!r} entry ({kind.__name__})")
    try:
        net = rebuild_supernet(state["supernet"])
        model = net.extract(ArchConfig.from_json(state["config"]))
        model.load_state_dict(state["state_dict"], strict=True)
    except (UserError, KeyError, TypeError, ValueError, RuntimeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ExportError(f"{path}: cannot rebuild the exported model ({first})") from None
    return model.eval()


def _onnx_session(path: Path, threads: int = 1) -> Any:
    return OnnxRuntime().session(path.read_bytes(), "cpu", threads)


def _onnx_metric(
    session: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    resolution: int,
    task: Task,
) -> float:
    """The task's primary metric of an ONNX Runtime session over ``batches``."""
    outputs = (
        (torch.from_numpy(session.run(None, {"input": resize(x, resolution).numpy()})[0]), y)
        for x, y in batches
    )
    return task.evaluate(outputs)[task.primary_metric]


def _onnx_latency(path: Path, shape: tuple[int, ...], threads: int, repeats: int) -> LatencyResult:
    session = _onnx_session(path, threads)
    feed = {"input": np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)}
    samples = time_runs(lambda: session.run(None, feed), "cpu", warmup=10, repeats=repeats)
    profile = DeviceProfile.detect(runtime="onnxruntime", threads=threads, batch_size=1)
    return LatencyResult.from_samples(samples, profile)


def _scripted_latency(
    scripted: Any, shape: tuple[int, ...], threads: int, repeats: int
) -> LatencyResult:
    example = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))

    def run() -> object:
        with torch.inference_mode():
            return scripted(example)

    with torch_threads(threads):
        samples = time_runs(run, "cpu", warmup=10, repeats=repeats)
    profile = DeviceProfile.detect(runtime="torchscript", threads=threads, batch_size=1)
    return LatencyResult.from_samples(samples, profile)


def quantize_int8(fp32: Path, int8: Path, data: DataSplits, resolution: int, batches: int) -> None:
    """ONNX Runtime static INT8 quantization (QDQ), calibrated on training batches."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, images: list[torch.Tensor]) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = iter(
                {"input": image.numpy()} for image in images
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    x_train, _ = data.train_tensors(limit=32 * batches)
    calibration = [resize(x_train[i : i + 32], resolution) for i in range(0, 32 * batches, 32)]
    quantize_static(
        str(fp32),
        str(int8),
        Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )


def export(
    run_dir: str | Path,
    choice: str | Mapping[str, Any] = "most-accurate",
    *,
    format: str = "onnx",
    int8: bool = False,
    out: str | Path | None = None,
    threads: int = 1,
    bn_batches: int = 10,
    latency_repeats: int = 50,
    calibration_batches: int = 8,
    search: str | SearchResult = DEFAULT_SEARCH,
    supernet: Supernet | None = None,
    data: DataSplits | None = None,
) -> ExportResult:
    """Export the sub-network ``choice`` of the run in ``run_dir`` (see the module doc).

    Named picks come from the run's search ``search`` (a name given to
    ``onefit search --run-name``, or a :class:`SearchResult` held in memory). ``supernet``
    and ``data`` are needed only for runs trained on objects onefit cannot rebuild.
    ``out`` defaults to ``RUN_DIR/exports/<pick>-<format>``. Latency is measured with
    ``threads`` threads at batch 1 on ONNX Runtime for ``onnx``, else PyTorch eager.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {list(FORMATS)}")
    check_timing_settings(warmup=0, repeats=latency_repeats, batch_size=1, threads=threads)
    if int8 and format != "onnx":
        raise ExportError("--int8 is made with ONNX Runtime: use it with --format onnx")
    run_dir = Path(run_dir)
    net = load_supernet(run_dir, supernet=supernet)
    net.require_images("onefit.deploy.export")
    needs_search = isinstance(choice, str) and not choice.strip().startswith("{")
    if not needs_search:
        record = SearchRecord([], {}, [])
    elif isinstance(search, SearchResult):
        record = SearchRecord.of(search)
    else:
        record = load_search(run_dir, search)
    label, raw_config = pick(record, choice)
    config = net.space.validate(raw_config)
    data = data if data is not None else run_data(run_dir)
    task = run_task(run_dir)
    run_id = RunDir(run_dir).run_id()
    target = Path(out) if out else RunDir(run_dir).export_dir(f"{_slug(label, config)}-{format}")
    _check_replaceable(target)
    model, difference = prepare_model(net, config, data, bn_batches)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # One export of a target at a time: its lock is held from the cleaning of stale
        # work folders to the publishing rename, so no cleaner removes a folder in use.
        lock = _lock_target(target)
    except OSError as error:
        raise ExportError(f"cannot write an export at {target}: {error}") from None
    if lock is None:
        raise ExportError(
            f"another export is writing {target} now; wait for it to finish or choose another --out"
        )
    try:
        _remove_stale_work(target.parent, target.name)
        # Everything is written into a fresh folder beside the target, which replaces the
        # target only once model and card are complete (see _publish).
        folder = Path(tempfile.mkdtemp(prefix=f".{target.name}{_WORK}", dir=target.parent))
        try:
            return _write_export(
                net, config, label, format, int8, data, task, model, difference, folder,
                target, run_dir, run_id, threads, latency_repeats, calibration_batches,
            )  # fmt: skip
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # gone once published; left by a failure
    except OSError as error:  # disk full, permissions: the previous export is untouched
        raise ExportError(f"cannot write the export at {target}: {error}") from None
    finally:
        _unlock_target(target, lock)


def _write_export(
    net: Supernet, config: ArchConfig, label: str, format: str, int8: bool,
    data: DataSplits, task: Task, model: nn.Module, difference: float, folder: Path,
    target: Path, run_dir: Path, run_id: str, threads: int, latency_repeats: int,
    calibration_batches: int,
) -> ExportResult:  # fmt: skip
    """Write the export into ``folder`` (a fresh work folder), then publish it as ``target``."""
    resolution = int(config["r"])
    shape = net.input_shape(config)
    path = folder / FILE_NAMES[format]
    x_val, y_val = data.val_tensors()
    val = batches(x_val, y_val, CALIBRATION_BATCH)
    metric = task.primary_metric
    # The metric per runtime, and the output checks passed: the card's Evaluation and Checks.
    figures = {"fp32": evaluate_model(model, val, resolution=resolution, task=task)[metric]}
    checks = {"max_abs_diff_vs_supernet": difference}
    with torch.no_grad():  # the probe prepare_model checked: the same accepted difference
        tolerance = tolerance_for(model(resize(x_val[:16], resolution)))
    files = {"model": path.name}
    int8_latency: LatencyResult | None = None

    if format == "pt":
        torch.save(
            {
                "format": EXPORT_FORMAT,
                "supernet": net.spec,
                "config": config.to_json(),
                "state_dict": model.state_dict(),
            },
            path,
        )
        latency = measure_latency(model, shape, threads=threads, repeats=latency_repeats)
    elif format == "torchscript":
        torch.jit.script(model).save(str(path))
        scripted = torch.jit.load(str(path))
        probe = resize(x_val[:8], resolution)
        with torch.no_grad():
            checks["torchscript_max_abs_diff_vs_pytorch"] = float(
                (scripted(probe) - model(probe)).abs().max()
            )
        if not checks["torchscript_max_abs_diff_vs_pytorch"] <= tolerance:
            raise ExportCheckError("the TorchScript model does not compute what PyTorch does")
        latency = _scripted_latency(scripted, shape, threads, latency_repeats)
    else:
        example = torch.zeros(1, *shape)
        path.write_bytes(export_onnx(model, example, dynamic_batch=True))
        session = _onnx_session(path)
        probe = resize(x_val[:8], resolution)
        (onnx_out,) = session.run(None, {"input": probe.numpy()})
        with torch.no_grad():
            checks["onnx_max_abs_diff_vs_pytorch"] = float(
                np.abs(onnx_out - model(probe).numpy()).max()
            )
        if not checks["onnx_max_abs_diff_vs_pytorch"] <= tolerance:
            raise ExportCheckError(
                f"ONNX output differs from PyTorch by {checks['onnx_max_abs_diff_vs_pytorch']:.2e}"
                f" (accepted: {tolerance:.2e})"
            )
        figures["onnx_fp32"] = _onnx_metric(session, val, resolution, task)
        with torch_threads(threads):
            latency = _onnx_latency(path, shape, threads, latency_repeats)
        if int8:
            int8_path = folder / "model_int8.onnx"
            quantize_int8(path, int8_path, data, resolution, calibration_batches)
            files["model_int8"] = int8_path.name
            figures["int8"] = _onnx_metric(_onnx_session(int8_path), val, resolution, task)
            figures["int8_drop"] = figures["onnx_fp32"] - figures["int8"]
            int8_latency = _onnx_latency(int8_path, shape, threads, latency_repeats)

    cost = net.cost(config)
    for name in files.values():
        _fsync(folder / name)
    card = ModelCard(
        onefit_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source_run=str(run_dir.resolve()),
        pick=label,
        format=format,
        files=files,
        sha256={role: file_sha256(folder / name) for role, name in files.items()},
        source_run_id=run_id,
        # As JSON reads it back (tuples become lists), so a loaded card equals this one.
        supernet=json.loads(json.dumps(net.spec)),
        config=config,
        input=InputSpec(
            shape=(1, *shape),
            preprocessing=_preprocessing(data, resolution),
        ),
        classes=data.classes,
        params=cost.params,
        macs=cost.macs,
        evaluation=Evaluation(
            task=task.name,
            metric=metric,
            split="validation",
            samples=len(y_val),
            fp32=figures["fp32"],
            onnx_fp32=figures.get("onnx_fp32"),
            int8=figures.get("int8"),
            int8_drop=figures.get("int8_drop"),
        ),
        latency=Latency.from_result(latency),
        latency_int8=Latency.from_result(int8_latency) if int8_latency is not None else None,
        checks=Checks(tolerance=tolerance, **checks),
    )
    card.save(folder / CARD_FILE)
    for extra in folder.iterdir():  # what a tool left beside the model (ONNX Runtime's)
        if extra.name not in {*files.values(), CARD_FILE}:
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    _publish(folder, target)
    return ExportResult(target, target / path.name, card)


# Beside an export "<name>": ".<name>.export-work-<random>" while it is written,
# ".<name>.export-old-<random>" for the previous export while it is replaced, and the
# lock file ".<name>.export-lock" held by the process writing it.
_WORK = ".export-work-"
_OLD = ".export-old-"
_LOCK = ".export-lock"
# What an export folder holds; a target folder with anything else is not replaced.
_EXPORT_FILES = {*FILE_NAMES.values(), "model_int8.onnx", CARD_FILE}


def _check_replaceable(target: Path) -> None:
    """An ExportError unless ``target`` is absent, empty or an export folder (never
    replace a folder of the user's other files)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder; choose another --out")
    others = sorted(p.name for p in target.iterdir() if p.name not in _EXPORT_FILES)
    if others:
        raise ExportError(
            f"{target} is not an export folder (it holds {others[:3]}); an export replaces "
            "its folder: choose a new or empty --out"
        )


def clean_stale_exports(parent: str | Path, name: str | None = None) -> list[Path]:
    """Remove the work folders interrupted exports left in ``parent`` (only those of
    export ``name`` when given); returns what was removed. Readers never list them.

    The folders of an export being written now are left alone: its lock is taken first,
    and a busy lock means a living process is writing that export.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    names = {name} if name is not None else {n for p in parent.iterdir() if (n := _owner(p))}
    removed = []
    for owner in sorted(names):
        try:
            lock = _lock_target(parent / owner)
        except OSError:  # a folder we may only read (a shared run): nothing is removed
            continue
        if lock is None:
            continue  # being written now
        try:
            removed += _remove_stale_work(parent, owner)
        finally:
            _unlock_target(parent / owner, lock)
    return removed


def _owner(path: Path) -> str | None:
    """The export a work folder ``.<name>.export-work-...`` belongs to; None otherwise."""
    for marker in (_WORK, _OLD):
        if path.name.startswith(".") and marker in path.name and path.is_dir():
            return path.name[1 : path.name.rindex(marker)]
    return None


def _remove_stale_work(parent: Path, name: str) -> list[Path]:
    """Remove export ``name``'s work folders; the caller holds its lock."""
    stale = sorted(p for p in parent.iterdir() if _owner(p) == name)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _lock_target(target: Path) -> IO[bytes] | None:
    """Hold the lock of export ``target`` (the file ``.<name>.export-lock`` beside it):
    the open locked file, or None when another living process holds it.

    The lock dies with its process, so a killed export never blocks the next one. Where
    ``fcntl`` is missing (Windows) nothing is locked.
    """
    path = target.with_name(f".{target.name}{_LOCK}")
    while True:
        file = open(path, "ab")  # noqa: SIM115 (closed by _unlock_target)
        if fcntl is None:
            return file
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        # The holder before us removes the file when it lets go: a lock on a removed
        # file guards nothing, so open the path again.
        try:
            current = os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return file
        file.close()


def _unlock_target(target: Path, lock: IO[bytes]) -> None:
    """Remove the lock file (while still holding it), then let go of the lock."""
    target.with_name(f".{target.name}{_LOCK}").unlink(missing_ok=True)
    lock.close()


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _publish(work: Path, target: Path) -> None:
    """Rename the complete export ``work`` into place as ``target``.

    The previous export, if any, is first renamed aside, then removed: a process killed
    at any moment leaves at ``target`` the previous complete export, the new complete
    one, or nothing (and work folders that readers ignore and the next export removes).
    """
    fsync_dir(work)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}{_OLD}{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(work, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["FORMATS", "NAMED_PICKS", "ExportError", "ExportResult", "export", "load_exported"]
