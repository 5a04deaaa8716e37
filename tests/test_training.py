"""The training engine on the embedded digits data: learning, exact resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import onefit
from onefit.data import DataError, from_tensors, load_dataset
from onefit.training import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainingError,
    evaluate_config,
    list_strategies,
    train,
)
from onefit.training.trainer import TIMING_KEYS

# A small but real setting: a reduced MobileNetV3 space at half width on 8x8 digits.
SMALL_SPACE = {"width_mult": 0.5, "depths": [1, 2], "expand_ratios": [2, 3], "kernel_sizes": [3, 5]}
SMALL_SPACE_JSON = json.dumps(SMALL_SPACE, separators=(",", ":"))
FAST = {
    "supernet_kwargs": SMALL_SPACE,
    "batch_size": 64,
    "bn_batches": 4,
    "progress": False,
    "lr": 0.1,
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.2, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list_strategies())
def test_every_strategy_improves_smallest_and_largest(
    strategy: str, digits, tmp_path: Path
) -> None:
    trainer = Trainer(
        TrainConfig(strategy=strategy, epochs=4, run_dir=str(tmp_path), **FAST), digits
    )
    before = trainer.evaluate()
    result = trainer.fit()
    after = result.history[-1]
    for name in ("smallest", "largest"):
        assert before[name]["accuracy"] < 0.3  # untrained: about chance (10 classes)
        assert after[f"val_{name}_accuracy"] > before[name]["accuracy"] + 0.4, (name, after)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "config.json").read_text())["strategy"] == strategy


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _results(history: list[dict]) -> list[dict]:
    """Epoch records without their timings (which differ between identical runs)."""
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


@pytest.mark.parametrize(
    ("strategy", "pause_at", "augment"),
    [("sandwich", 7, "cifar"), ("progressive", 25, "none"), ("deps", 20, "none"),
     # the loader and augmentation path is sandwich's too: slow, for CI time
     pytest.param("sorted", 22, "cifar", marks=pytest.mark.slow)],
)  # fmt: skip
def test_resumed_run_equals_uninterrupted_run(
    strategy: str, pause_at: int, augment: str, digits, tmp_path: Path
) -> None:
    # Two loader workers, and random crops and flips drawn in them for two strategies.
    settings = {**FAST, "strategy": strategy, "epochs": 2, "strategy_kwargs": {}}
    settings.update(num_workers=2, augment=augment)
    if strategy in ("sandwich", "deps"):
        settings["strategy_kwargs"] = {"num_random": 1}
    full = train(settings, run_dir=str(tmp_path / "full"), data=digits)
    paused = train(
        settings, run_dir=str(tmp_path / "resumed"), data=digits, stop_after_steps=pause_at
    )
    assert paused.interrupted == "stop_after_steps" and paused.steps == pause_at
    resumed = train(settings, run_dir=str(tmp_path / "resumed"), data=digits)
    assert resumed.finished and resumed.steps == full.steps == 2 * 22
    _same_weights(full.supernet, resumed.supernet)
    assert _results(full.history) == _results(resumed.history)


def test_workers_and_augmentation_give_the_same_run_as_reading_in_process(
    digits, tmp_path: Path
) -> None:
    settings = {**FAST, "epochs": 1, "augment": "cifar", "augment_kwargs": {"mixup_alpha": 0.2}}
    runs = [
        train(
            {**settings, "num_workers": workers}, run_dir=str(tmp_path / str(workers)), data=digits
        )
        for workers in (0, 2)
    ]
    _same_weights(runs[0].supernet, runs[1].supernet)
    assert _results(runs[0].history) == _results(runs[1].history)
    # ... and augmentation changed the run: the same settings without it differ.
    plain = train(
        {**settings, "augment": "none", "augment_kwargs": {}},
        run_dir=str(tmp_path / "p"),
        data=digits,
    )
    assert plain.history[0]["train_loss"] != runs[0].history[0]["train_loss"]


def test_bn_recalibration_changes_statistics_and_helps(digits, tmp_path: Path) -> None:
    result = train({**FAST, "epochs": 3}, run_dir=str(tmp_path), data=digits)
    net = result.supernet
    config = net.space.smallest()
    val = [(digits.val_tensors()[0], digits.val_tensors()[1])]
    train_x, train_y = digits.train_tensors()
    calibration = [(train_x[i : i + 64], train_y[i : i + 64]) for i in range(0, 256, 64)]
    shared = evaluate_config(net, config, val, None)
    recalibrated = evaluate_config(net, config, val, calibration, bn_batches=4)
    assert recalibrated["accuracy"] > shared["accuracy"] + 0.05, (shared, recalibrated)
    # The statistics really changed, and the supernet's own were left alone.
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = net.extract(config)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [bn.running_mean.clone() for bn in norms]
    onefit.training.recalibrate_bn(model, calibration, num_batches=4)
    assert all(not torch.allclose(bn.running_mean, s) for bn, s in zip(norms, stats))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_non_finite_loss_stops_with_the_step(tmp_path: Path) -> None:
    images = torch.rand(128, 1, 8, 8)
    labels = torch.arange(128) % 4
    data = from_tensors(images, labels, val_fraction=0.25, seed=0)
    with pytest.raises(TrainingError, match=r"non-finite loss at step \d+ .*last good checkpoint"):
        train({**FAST, "lr": 1e30, "epochs": 5, "batch_size": 32}, run_dir=str(tmp_path), data=data)


def test_bad_inputs_give_clear_errors(digits, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no/such/folder"):
        train({**FAST, "dataset": str(tmp_path / "no/such/folder")}, run_dir=str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match=r"training setting lr=-1 must be a finite number > 0"):
        TrainConfig.from_dict({"lr": -1})
    # A corrupt checkpoint in the run dir is reported, not silently replaced.
    run = tmp_path / "corrupt"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable onefit checkpoint"):
        train({**FAST, "epochs": 1}, run_dir=str(run), data=digits)
    # A checkpoint of another supernet cannot be resumed into this one.
    other = tmp_path / "other"
    train({**FAST, "epochs": 1}, run_dir=str(other), data=digits, stop_after_steps=1)
    with pytest.raises(CheckpointError, match="is for supernet 'mobilenetv3', not 'resnet'"):
        train(
            {**FAST, "epochs": 1, "supernet": "resnet", "supernet_kwargs": {"base_width": 8}},
            run_dir=str(other),
            data=digits,
        )
    # The same family with another space is caught too.
    with pytest.raises(CheckpointError, match=r"built with other arguments \(depths"):
        train(
            {**FAST, "epochs": 1, "supernet_kwargs": {**SMALL_SPACE, "depths": [1, 2, 3]}},
            run_dir=str(other),
            data=digits,
        )


def _cli(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "onefit", *args]


def test_sigint_saves_a_checkpoint_and_the_same_command_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = _cli(
        "train", "--epochs", "3", "--run-dir", str(run), "--batch-size", "64",
        f"--set=supernet_kwargs={SMALL_SPACE_JSON}", "--set", "progress=false",
        "--set", "bn_batches=2",
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while not metrics.exists() and time.time() < deadline:  # wait for the first epoch
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "paused at step" in output and "Run the same command to continue" in output
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert 22 <= state["step"] < 66
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done: 66 steps" in done.stdout
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_cli_train_errors_are_one_line(tmp_path: Path) -> None:
    bad = subprocess.run(
        _cli("train", "--set", "epoch=3", "--run-dir", str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "unknown training setting(s) ['epoch']" in bad.stderr and "Traceback" not in bad.stderr
    config = tmp_path / "run.toml"
    config.write_text('[train]\nepochs = 1\nstrategy = "nope"\n')
    bad = subprocess.run(_cli("train", "--config", str(config)), capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown training strategy 'nope'" in bad.stderr


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            # --standalone: a private rendezvous on a free port.
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "onefit", "train", "--epochs", "3",
            "--run-dir", str(run), "--batch-size", "64",
            f"--set=supernet_kwargs={SMALL_SPACE_JSON}", "--set", "progress=false",
            "--set", "bn_batches=2",
            # A loader worker per process, drawing random crops and flips.
            "--set", "augment=cifar", "--set", "num_workers=1",
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # The trainer compares every weight across processes after the last step.
    assert "weights identical across 2 processes after step 66" in done.stdout
    losses = [
        json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert losses[-1] < losses[0]
    assert json.loads((run / "config.json").read_text())["world_size"] == 2


def test_config_file_and_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("torch.utils.tensorboard")  # installed by the test extra
    config = tmp_path / "run.toml"
    run = tmp_path / "run"
    config.write_text(
        "[train]\nepochs = 1\nbatch_size = 128\nprogress = false\nbn_batches = 2\n"
        f'run_dir = "{run}"\nsupernet_kwargs = {SMALL_SPACE_JSON.replace(":", "=")}\n'
    )
    done = subprocess.run(
        _cli("train", "--config", str(config), "--lr", "0.2"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["lr"] == 0.2 and resolved["epochs"] == 1  # the flag overrides the file
    assert resolved["supernet_kwargs"]["depths"] == [1, 2]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_elastic_resolution_trains_each_sub_network_at_its_own_size(digits, tmp_path: Path) -> None:
    settings = TrainConfig.from_dict(
        {
            **FAST,
            "epochs": 1,
            "run_dir": str(tmp_path),
            "supernet_kwargs": {**SMALL_SPACE, "resolutions": [6, 8]},
        }
    )
    trainer = Trainer(settings, digits)
    seen: list[int] = []
    forward = trainer.net.forward

    def recording_forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[-1])
        assert x.shape[-1] == trainer.net.active_config["r"]
        return forward(x)

    trainer.net.forward = recording_forward  # type: ignore[method-assign]
    images, labels = next(trainer.batches(0))
    for _ in range(6):
        trainer.train_step(images, labels)
    assert set(seen) == {6, 8}  # largest at 8, smallest at 6, random ones either


def test_adamw_optimizer_and_a_transformer_supernet(digits, tmp_path: Path) -> None:
    config = TrainConfig(supernet="vit", optimizer="adamw", lr=1e-3, epochs=1, batch_size=64,
                         bn_batches=2, progress=False, tensorboard=False,
                         run_dir=str(tmp_path))  # fmt: skip
    trainer = Trainer(config, digits)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    result = trainer.fit()
    record = result.history[-1]
    assert all(torch.isfinite(torch.tensor(v)) for k, v in record.items() if k != "epoch")
    # Resuming restores AdamW's state: a finished run has nothing left to do.
    assert Trainer(config, digits).fit().steps == result.steps
    with pytest.raises(ValueError, match="optimizer='adam' must be 'sgd' or 'adamw'"):
        TrainConfig(optimizer="adam").validate()
