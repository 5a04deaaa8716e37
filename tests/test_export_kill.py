"""Exports are atomic: killed at any moment, a rerun finds a complete export or none.

``onefit export`` writes into a work folder beside the target and renames it into place
once model and card are complete; these tests SIGKILL it at random moments (as the
training and search kill tests do) and check that what is left at the target is either
the previous complete export or nothing, that readers never list a half-written one, and
that a rerun completes with a model whose SHA-256 is the card's and which computes what
the supernet computes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import onefit
from onefit.deploy import export, load_exported
from onefit.deploy.card import CARD_FILE, ModelCard, ModelCardError, read_export
from onefit.deploy.export import ExportError, prepare_model
from onefit.rundir import RunDir
from onefit.search.supernet import run_data
from onefit.training import resize

SMALL = {"width_mult": 0.5, "depths": [1, 2], "kernel_sizes": [3], "expand_ratios": [2, 3]}
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("kill") / "run"
    onefit.train(
        epochs=1, batch_size=128, lr=0.1, run_dir=str(run), supernet_kwargs=SMALL,
        strategy="sorted", progress=False, tensorboard=False, bn_batches=2,
    )  # fmt: skip
    net = onefit.load_supernet(run)
    config = dict(net.space.smallest()) | {"d.0": 2}
    return {"run": run, "config": config}


def assert_consistent(trained: dict[str, Any], target: Path) -> None:
    """The export at ``target`` is complete: its card verifies every model file, and the
    model computes what the recalibrated supernet computes (as export checks)."""
    card = read_export(target)
    assert card.source_run_id == RunDir(trained["run"]).run_id()
    model = load_exported(target / card.files["model"])
    net = onefit.load_supernet(trained["run"])
    data = run_data(trained["run"])
    reference, _ = prepare_model(net, card.config, data, bn_batches=10)
    x, _ = data.val_tensors()
    probe = resize(x[:16], int(card.config["r"]))
    with torch.no_grad():
        assert (model(probe) - reference(probe)).abs().max() <= 1e-5


def listed(run: Path) -> list[str]:
    return [p.parent.name for p in RunDir(run).model_cards()]


def test_a_failed_export_leaves_the_previous_one(trained, tmp_path, monkeypatch) -> None:
    run, config = trained["run"], trained["config"]
    target = run / "exports" / "in-process"
    first = export(run, config, format="pt", out=target, latency_repeats=3)
    before = (target / CARD_FILE).read_bytes()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ModelCard, "save", fail)
    with pytest.raises(ExportError, match=r"cannot write the export at .*in-process: disk full"):
        export(run, config, format="pt", out=target, latency_repeats=3)
    monkeypatch.undo()
    assert (target / CARD_FILE).read_bytes() == before  # the previous export, untouched
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []
    assert read_export(target) == first.card
    # a damaged model file is refused by every reader, naming it
    (target / "model.pt").write_bytes((target / "model.pt").read_bytes()[:-10])
    with pytest.raises(ModelCardError, match=r"model\.pt: content hash mismatch"):
        load_exported(target / "model.pt")
    # a folder of other files is never replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an export folder"):
        export(run, config, format="pt", out=tmp_path / "mine", latency_repeats=3)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_second_export_of_the_same_target_is_refused_while_one_writes(trained) -> None:
    from onefit.deploy.export import _lock_target, _unlock_target

    run, config = trained["run"], trained["config"]
    target = run / "exports" / "busy"
    lock = _lock_target(target)  # as an export writing there holds it
    assert lock is not None
    with pytest.raises(ExportError, match=r"another export is writing .*busy now"):
        export(run, config, format="pt", out=target, latency_repeats=3)
    _unlock_target(target, lock)
    export(run, config, format="pt", out=target, latency_repeats=3)
    assert_consistent(trained, target)


def _command(run: Path, config: dict[str, Any], target: Path) -> list[str]:
    return [
        sys.executable, "-m", "onefit", "export", str(run), "--pick", json.dumps(config),
        "--format", "pt", "--out", str(target),
    ]  # fmt: skip


def _work_folders(target: Path) -> list[Path]:
    return list(target.parent.glob(f".{target.name}.export-work-*"))


def _writing_started(target: Path) -> bool:
    return bool(_work_folders(target))


def _model_written(target: Path) -> bool:
    return any((w / "model.pt").is_file() for w in _work_folders(target))


def _kill_when(process: subprocess.Popen, moment: Any, target: Path) -> str:
    """SIGKILL ``process`` once ``moment(target)`` holds (polled every millisecond), or
    at a random time when ``moment`` is a number of seconds; what the kill interrupted."""
    deadline = time.monotonic() + (moment if isinstance(moment, float) else 120.0)
    while process.poll() is None and time.monotonic() < deadline:
        if not isinstance(moment, float) and moment(target):
            break
        time.sleep(0.001)
    mid_write = _writing_started(target)
    process.send_signal(signal.SIGKILL)
    if process.wait() == 0:
        return "finished"  # it ended before the signal came
    return "mid-write" if mid_write else "before writing"


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_complete_export_or_none(trained) -> None:
    run, config = trained["run"], trained["config"]
    target = run / "exports" / "killed-pt"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.monotonic()
    subprocess.run(_command(run, config, target), env=env, check=True, capture_output=True)
    duration = time.monotonic() - started
    assert_consistent(trained, target)
    rng = random.Random(14)
    # Two kills at moments seen on disk (the work folder made; the model in it, before
    # the card), then random moments late in the run, where the files are written.
    moments = [_writing_started, _model_written] + [
        duration * rng.uniform(0.5, 1.05) for _ in range(3)
    ]
    outcomes = []
    for moment in moments:
        card_before = (target / CARD_FILE).read_bytes() if target.exists() else None
        process = subprocess.Popen(
            _command(run, config, target), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        interrupted = _kill_when(process, moment, target)
        if target.exists():
            assert_consistent(trained, target)  # the previous export, or the new one complete
            card_now = (target / CARD_FILE).read_bytes()
            outcomes.append((interrupted, "same" if card_now == card_before else "replaced"))
        else:
            outcomes.append((interrupted, "none"))  # between the two renames
        # Readers list only complete exports, never a work folder.
        assert all(not name.startswith(".") for name in listed(run))
    # The kills timed by what was on disk did land while the export was being written.
    assert [interrupted for interrupted, _ in outcomes[:2]] == ["mid-write", "mid-write"]
    subprocess.run(_command(run, config, target), env=env, check=True, capture_output=True)
    assert_consistent(trained, target)
    stale = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    assert stale == [], stale  # the rerun removed the killed ones' work folders and lock
    assert "killed-pt" in listed(run)
    print("outcomes after each kill:", outcomes)
