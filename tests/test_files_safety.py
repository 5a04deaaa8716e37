"""Files onefit reads never run code, a damaged byte is named, HTML from files is escaped.

A pickle whose ``__reduce__`` would create a marker file is placed wherever a
checkpoint is expected (resume, ``init_weights``, the trained supernet search and export
load); it is refused and the marker never appears. Bytes flipped anywhere in a
checkpoint are each refused with the file named. ``<script>`` in every field of
``config.json``, ``metrics.jsonl``, ``run.json`` and a model card is escaped in the report.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

import onefit
from onefit.deploy import export
from onefit.deploy.card import Evaluation, ModelCard
from onefit.deploy.report import read_metrics, write_report
from onefit.errors import UserError
from onefit.rundir import RUN_FORMAT, RunDir
from onefit.search.supernet import search_run
from onefit.supernets import create_supernet
from onefit.training import CheckpointError, TrainConfig, Trainer, load_checkpoint, load_supernet
from onefit.training.checkpoint import FORMAT, VERSION, _trailer, save_checkpoint

SMALL = {"width_mult": 0.5, "depths": [1], "kernel_sizes": [3], "expand_ratios": [3]}
SCRIPT = "<script>alert(1)</script>"


class Marker:
    """Unpickling this creates the marker file: what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


def malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The ways to smuggle code into a checkpoint: torch.save, a raw pickle, and a
    torch.save with a valid onefit hash trailer (the hash passes: weights_only refuses)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "model": Marker(marker), "supernet": {}}
    files = {"torch": folder / "torch.pt", "pickle": folder / "pickle.pt"}
    torch.save(payload, files["torch"])
    files["pickle"].write_bytes(pickle.dumps(payload))
    body = files["torch"].read_bytes()
    files["hashed"] = folder / "hashed.pt"
    files["hashed"].write_bytes(body + _trailer(body))
    return files


def test_the_marker_class_really_creates_its_file(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Marker(marker)))  # what torch.load(weights_only=False) would do
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch", "pickle", "hashed"])
def test_a_malicious_checkpoint_is_refused_everywhere_one_is_read(tmp_path: Path, kind) -> None:
    marker = tmp_path / "marker"
    evil = malicious_files(tmp_path / "evil", marker)[kind]
    with pytest.raises(CheckpointError, match=str(evil)):
        load_checkpoint(evil)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
    settings = dict(epochs=1, progress=False, tensorboard=False, supernet_kwargs=SMALL)
    # resume: training from a run directory whose checkpoint is the malicious file
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        onefit.train(run_dir=str(run), **settings)
    # the trained supernet, as search and export load it
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        load_supernet(run)
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        search_run(run, {"accuracy": "max", "macs": "min"}, budget=1)
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        export(run, "{}", format="pt")
    # init_weights of a fresh run
    with pytest.raises(UserError, match=evil.name):
        onefit.train(run_dir=str(tmp_path / "fresh"), init_weights=str(evil), **settings)
    assert not marker.exists()


def _checkpoint(tmp_path: Path) -> Path:
    net = create_supernet("mobilenetv3", num_classes=10, in_channels=1, image_size=8, **SMALL)
    state = {
        "supernet": {"name": "mobilenetv3", "kwargs": SMALL, "space": net.space.to_dict()},
        "model": net.state_dict(),
        "step": 3,
    }
    return save_checkpoint(state, tmp_path / "last.pt")


def test_every_flipped_byte_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    good = path.read_bytes()
    load_checkpoint(path)
    # 30 positions spread over the file, the first and last bytes included.
    positions = sorted({round(i * (len(good) - 1) / 29) for i in range(30)})
    assert len(positions) == 30
    for position in positions:
        damaged = bytearray(good)
        damaged[position] ^= 0x10
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=str(path)) as raised:
            load_checkpoint(path)
        assert "content hash" in str(raised.value), position
    for cut in (0, 1, len(good) // 2, len(good) - 1):
        path.write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(path)


def test_a_checkpoint_for_other_arguments_is_refused_naming_both(tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=1, run_dir=str(tmp_path), progress=False, tensorboard=False,
        supernet_kwargs=SMALL,
    )  # fmt: skip
    Trainer(config).save()
    other = Trainer(config.replace(supernet_kwargs=SMALL | {"width_mult": 0.75}))
    with pytest.raises(CheckpointError) as raised:
        other.restore(other.checkpoint_path)
    message = str(raised.value)
    assert "last.pt" in message and "width_mult: checkpoint 0.5, this supernet 0.75" in message
    # load_supernet with a supernet built with other arguments
    net = create_supernet("mobilenetv3", **(other.supernet_kwargs))
    with pytest.raises(CheckpointError, match=r"width_mult: checkpoint 0\.5, passed in 0\.75"):
        load_supernet(tmp_path, supernet=net)


def test_missing_entries_are_named(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    state = load_checkpoint(path)
    del state["model"]
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, path)
    with pytest.raises(CheckpointError, match=f"{path}: checkpoint has no 'model' entry"):
        load_checkpoint(path)
    save_checkpoint({"model": {"w": "not a tensor"}, "supernet": {}}, path)
    with pytest.raises(CheckpointError, match="'model' is not a state dict"):
        load_checkpoint(path)
    save_checkpoint({"model": {}}, path)
    with pytest.raises(CheckpointError, match="no 'supernet' entry"):
        load_supernet(path)


def _card(folder: Path, **changes: Any) -> ModelCard:
    """A hand-made card for the model file in ``folder`` (from test_model_card)."""
    from tests.test_model_card import example_card

    (folder / "model.onnx").write_bytes(b"an onnx model")
    digest = hashlib.sha256(b"an onnx model").hexdigest()
    return example_card(files={"model": "model.onnx"}, sha256={"model": digest}, **changes)


def test_every_string_from_a_file_is_escaped_in_the_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "exports" / "a").mkdir(parents=True)
    settings = {key: SCRIPT for key in ("supernet", "strategy", "epochs", "dataset", "other")}
    (run / "config.json").write_text(json.dumps(settings))
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "run_id": SCRIPT}))
    rows = [
        {"epoch": 1, "train_loss": 1.0, "val_largest_accuracy": 0.5, SCRIPT: SCRIPT},
        {"epoch": 2, "train_loss": SCRIPT},
        {"epoch": SCRIPT, "train_loss": 1.0},
        {"epoch": 3, "train_loss": 0.5, f"val_{SCRIPT}_accuracy": SCRIPT},
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + f"\n{SCRIPT}\n")
    card = _card(
        run / "exports" / "a", pick=SCRIPT, format=SCRIPT, source_run_id=SCRIPT,
        evaluation=Evaluation(
            split=SCRIPT, samples=1, fp32=0.5, metric=SCRIPT, task=SCRIPT
        ),
    )  # fmt: skip
    card.save(run / "exports" / "a" / "model_card.json")
    # a damaged card: its error message (holding the file's text) is shown too
    (run / "exports" / "b").mkdir()
    (run / "exports" / "b" / "model_card.json").write_text(json.dumps({"schema": SCRIPT}))
    page = write_report(run).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the report's own
    assert "Training rows not shown" in page and "metrics.jsonl line 2" in page
    assert "Exports not shown" in page


def test_damaged_metrics_rows_are_named_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2}\nnot json\n'
        '{"epoch": 3, "train_loss": NaN}\n[1]\n{"epoch": true, "train_loss": 1}\n'
        '{"epoch": 4, "train_loss": 0.25, "val_x_accuracy": "high"}\n'
        '{"epoch": 5, "train_loss": 0.2, "val_x_accuracy": null}\n'
    )
    rows, warnings = read_metrics(path)
    assert [r["epoch"] for r in rows] == [1, 5]
    assert [w.split(": ")[0] for w in warnings] == [f"{path} line {n}" for n in (2, 3, 4, 5, 6, 7)]
    assert "no 'train_loss'" in warnings[0] and "'train_loss' is nan" in warnings[2]
    path.write_bytes(b"\xff\xfe{}")
    assert "UTF-8" in read_metrics(path)[1][0]


def test_a_damaged_config_json_is_named(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for text in ("[1, 2]", "{not json", '"a string"'):
        (run / "config.json").write_text(text)
        with pytest.raises(UserError, match=r"config\.json"):
            write_report(run)
    (run / "config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(UserError, match=r"config\.json"):
        write_report(run)
    (run / "config.json").write_text("{}")
    (run / "run.json").write_text("{}")
    with pytest.raises(UserError, match=r"run\.json"):
        write_report(run)


def test_a_copied_export_and_a_damaged_model_file_are_not_listed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "config.json").parent.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    run_id = RunDir(run).run_id()
    for name, source in (("mine", run_id), ("copied", "another")):
        folder = run / "exports" / name
        folder.mkdir(parents=True)
        _card(folder, pick=f"pick-{name}", source_run_id=source).save(folder / "model_card.json")
    (run / "exports" / ".mine.export-work-x").mkdir()  # an interrupted export's work folder
    page = write_report(run).read_text()
    assert "pick-mine" in page and "exported from another run" in page
    assert not (run / "exports" / ".mine.export-work-x").exists()
    (run / "exports" / "mine" / "model.onnx").write_bytes(b"an onnx modeL")
    page = write_report(run).read_text()
    assert "content hash mismatch" in page and "mine/model.onnx" in page


def test_cleaners_remove_only_work_folders_no_export_is_writing(tmp_path: Path) -> None:
    from onefit.deploy.export import _lock_target, _unlock_target, clean_stale_exports

    busy, dead = tmp_path / ".a.export-work-1", tmp_path / ".b.export-work-2"
    busy.mkdir()
    dead.mkdir()
    lock = _lock_target(tmp_path / "a")  # an export of "a" writing now
    assert lock is not None
    (tmp_path / ".b.export-lock").touch()  # "b" was killed: its lock died with it
    (tmp_path / "a").mkdir()  # a published export is never touched
    assert clean_stale_exports(tmp_path) == [dead]
    assert busy.exists() and (tmp_path / "a").exists()
    assert _lock_target(tmp_path / "a") is None  # a second writer of "a" is kept out
    _unlock_target(tmp_path / "a", lock)
    assert not (tmp_path / ".a.export-lock").exists()
    assert clean_stale_exports(tmp_path, "a") == [busy]
    # cleaning "b" took its lock and removed the file with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_a_lock_whose_file_was_removed_is_taken_again(tmp_path: Path, monkeypatch) -> None:
    # The race of lock files removed on release: we open the file, its holder removes it
    # and lets go, we lock the removed file while the next writer creates and locks a new
    # one; both would "hold" the lock. onefit checks the locked file is still the one
    # there, and opens it again when not.
    import fcntl
    import importlib
    import os

    # (onefit.deploy.export the module; the package's attribute is the function)
    export_module = importlib.import_module("onefit.deploy.export")

    target = tmp_path / "x"
    path = tmp_path / ".x.export-lock"
    real_flock, calls = fcntl.flock, []

    def flock_after_the_holder_let_go(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            path.unlink()  # the holder removed the file we had just opened
        real_flock(fd, operation)

    monkeypatch.setattr(export_module.fcntl, "flock", flock_after_the_holder_let_go)
    lock = export_module._lock_target(target)
    monkeypatch.undo()
    assert lock is not None and len(calls) == 2  # locked the removed file, then again
    assert os.fstat(lock.fileno()).st_ino == os.stat(path).st_ino  # the file that is there
    assert export_module._lock_target(target) is None  # and it keeps others out
    export_module._unlock_target(target, lock)


def test_the_same_arguments_spelled_as_int_or_float_resume(tmp_path: Path) -> None:
    # width_mult = 1 in a TOML file and --set width_mult=1.0 build the same network.
    config = TrainConfig(
        epochs=1, run_dir=str(tmp_path), progress=False, tensorboard=False,
        supernet_kwargs=SMALL | {"width_mult": 1},
    )  # fmt: skip
    Trainer(config).save()
    other = Trainer(config.replace(supernet_kwargs=SMALL | {"width_mult": 1.0}))
    other.restore(other.checkpoint_path)  # no error
    assert other.step == 0


def test_continuing_a_finished_run_leaves_its_checkpoint_byte_for_byte(tmp_path: Path) -> None:
    # Searches record the checkpoint's SHA-256: a rerun of a finished training (the demo
    # does one on every rerun) must not rewrite it, or every search of the run is refused.
    config = TrainConfig(
        epochs=1, batch_size=512, run_dir=str(tmp_path), progress=False, tensorboard=False,
        supernet_kwargs=SMALL, bn_batches=1,
    )  # fmt: skip
    first = Trainer(config).fit()
    before = first.checkpoint.read_bytes()
    again = Trainer(config.replace(progress=True)).fit()
    assert again.steps == first.steps and again.checkpoint.read_bytes() == before
