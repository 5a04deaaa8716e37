from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from onefit.training import CheckpointError, load_checkpoint, save_checkpoint


def _state(value: float) -> dict:
    return {
        "supernet": {"name": "mobilenetv3", "space": {"r": [8], "d.0": [1, 2]}},
        "model": {"w": torch.full((1000, 1000), value)},
        "step": int(value),
    }


def test_round_trip_and_identity_checks(tmp_path: Path) -> None:
    path = save_checkpoint(_state(3.0), tmp_path / "c" / "last.pt")
    state = load_checkpoint(path, supernet="mobilenetv3", space={"r": [8], "d.0": [1, 2]})
    assert state["step"] == 3 and torch.equal(state["model"]["w"], torch.full((1000, 1000), 3.0))
    with pytest.raises(CheckpointError, match="is for supernet 'mobilenetv3', not 'resnet'"):
        load_checkpoint(path, supernet="resnet")
    with pytest.raises(CheckpointError, match=r"search space differs .*\['d.0'\]"):
        load_checkpoint(path, space={"r": [8], "d.0": [1, 2, 3]})
    assert not list(path.parent.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable onefit checkpoint"),
        (b"garbage" * 100, "not a readable onefit checkpoint"),
    ],
)
def test_corrupt_files_give_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable onefit checkpoint"):
        load_checkpoint(path)
    torch.save({"just": "a dict"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no content hash trailer"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint({"just": "a dict"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="checkpoint has no 'model' entry"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo hacked > " + str(tmp_path / "hacked"),))

    torch.save({"format": "onefit-checkpoint", "version": 1, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable onefit checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "hacked").exists()


WRITER = """
import sys, torch
from onefit.training import save_checkpoint
i = 0
while True:
    i += 1
    save_checkpoint({"model": {"w": torch.full((1500, 1500), float(i))}, "step": i}, sys.argv[1])
    print(i, flush=True)
"""


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one complete save
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(path)
        w = state["model"]["w"]
        assert torch.equal(w, torch.full_like(w, float(state["step"])))  # not torn


def test_load_supernet_rebuilds_the_trained_network(tmp_path: Path) -> None:
    import onefit
    from onefit.training import TrainConfig, Trainer, load_supernet

    config = TrainConfig(
        epochs=1, run_dir=str(tmp_path), progress=False, tensorboard=False, strategy="sorted",
        supernet_kwargs={"depths": [1, 2], "kernel_sizes": [3], "expand_ratios": [3],
                         "width_mult": 0.5},
    )  # fmt: skip
    trainer = Trainer(config)
    trainer.fit()
    net = load_supernet(tmp_path)
    assert not net.training and net.space == trainer.net.space
    config_ = net.space.sample(seed=0)
    x = torch.randn(4, *net.input_shape(config_))
    trained = trainer.net.eval().extract(config_)
    with torch.no_grad():
        assert torch.equal(net.extract(config_)(x), trained(x))
    assert load_supernet(tmp_path / "checkpoints" / "last.pt").spec == net.spec
    assert isinstance(net, onefit.Supernet)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_supernet(tmp_path / "elsewhere")


def test_a_converted_run_whose_space_rebuilds_differently_is_refused(tmp_path, monkeypatch) -> None:
    """Conversion rules that changed since a run was trained give the same weights with
    other dimensions: loading must say so, not pair them with untrained choices."""
    import onefit
    import onefit.convert.supernet as converted

    run = tmp_path / "run"
    onefit.train(supernet="model", epochs=1, batch_size=128, run_dir=str(run),
                 progress=False, tensorboard=False, bn_batches=1)  # fmt: skip
    assert onefit.load_supernet(run).space.names  # loads while the rules are the same
    monkeypatch.setattr(converted, "width_choices", lambda channels, ratios, round_to: [channels])
    with pytest.raises(CheckpointError, match=r"rebuilds with another search space .* w\.0"):
        onefit.load_supernet(run)
