"""Your own model and your own task through the whole pipeline (issue 12).

A small CNN defined here (not torchvision, not a registered family) is elasticized by
its import path, trained, then searched, exported to ONNX and reported in fresh
processes that rebuild it from the run directory; a regression task (mean-squared
error on data made here) is trained, evaluated, searched and exported end to end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import onefit
from onefit.deploy.picks import SearchRecord, pick
from onefit.search.supernet import search_run
from onefit.training import evaluate_config

HERE = Path(__file__).resolve().parent
FAST = {"epochs": 1, "batch_size": 128, "bn_batches": 2, "progress": False, "tensorboard": False}


def small_cnn(num_classes: int = 10, width: int = 16) -> nn.Module:
    """The user's model: two conv blocks and a classifier, for 1x8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )  # fmt: skip


def _onefit(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process that can import this module (as a user's package)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "onefit", *args], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip


def _check_run_reopens(run: Path) -> None:
    """search, export (ONNX) and report of ``run`` in fresh processes."""
    searched = _onefit("search", str(run), "--strategy", "random", "--budget", "4",
                       "--run-name", "a", "--out", str(run / "elsewhere"))  # fmt: skip
    assert searched.returncode == 0, searched.stderr
    exported = _onefit("export", str(run), "--search", "a", "--pick", "smallest")
    assert exported.returncode == 0, exported.stderr
    card = onefit.deploy.ModelCard.load(run / "exports" / "smallest-onnx" / "model_card.json")
    net = onefit.load_supernet(run)
    assert net.spec is not None and net.spec["name"] == "model"
    assert card.macs == net.macs(card.config)
    reported = _onefit("report", str(run), "--search", "a")
    assert reported.returncode == 0, reported.stderr
    assert (run / "report" / "index.html").is_file()


@pytest.mark.slow
def test_custom_cnn_through_python_api_then_fresh_processes(tmp_path: Path) -> None:
    net = onefit.elasticize(f"{__name__}:small_cnn", torch.zeros(2, 1, 8, 8), verbose=False)
    assert len(net.space.names) >= 2  # the widths became elastic
    run = tmp_path / "run"
    result = onefit.train(supernet=net, run_dir=str(run), **FAST)
    assert result.finished
    rebuilt = onefit.load_supernet(run)
    trained = result.supernet.eval()
    x = torch.randn(3, 1, 8, 8)
    for config in (net.space.smallest(), net.space.largest()):
        rebuilt.set_active(config), trained.set_active(config)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), trained(x))
    _check_run_reopens(run)


@pytest.mark.slow
def test_custom_cnn_through_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained = _onefit("train", "--model", f"{__name__}:small_cnn", "--model-kwargs",
                      '{"width": 8}', "--input-shape", "1,8,8", "--epochs", "1",
                      "--batch-size", "128", "--run-dir", str(run),
                      "--set", "progress=false", "--set", "tensorboard=false")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    settings = json.loads((run / "config.json").read_text())
    assert settings["supernet_kwargs"]["factory"] == f"{__name__}:small_cnn"
    _check_run_reopens(run)


def _regression_data(n: int, seed: int) -> TensorDataset:
    """Images whose target is a fixed linear function of their pixels."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    y = x[:, :, :4].mean(dim=(1, 2, 3)).unsqueeze(1) * 3.0
    return TensorDataset(x, y)


def test_a_regression_task_trains_evaluates_searches_and_exports(tmp_path: Path) -> None:
    train_data, val_data = _regression_data(512, 0), _regression_data(128, 1)
    run = tmp_path / "run"
    small = {"width_mult": 0.5, "depths": [1, 2], "expand_ratios": [2, 3], "num_classes": 1,
             "in_channels": 1, "image_size": 8}  # fmt: skip
    result = onefit.train(task="regression", supernet_kwargs=small, train_data=train_data,
                          val_data=val_data, run_dir=str(run), optimizer="adamw", lr=3e-3,
                          **{**FAST, "epochs": 3, "batch_size": 64})  # fmt: skip
    last = result.history[-1]
    assert {"val_largest_mse", "val_largest_mae"} <= set(last)
    assert "val_largest_accuracy" not in last
    # Trained: the error falls epoch by epoch and ends below that of predicting the mean
    # target (the variance of y).
    variance = float(val_data.tensors[1].var())
    errors = [h["val_largest_mse"] for h in result.history]
    assert errors[-1] < errors[0] and errors[-1] < variance
    data = onefit.data.from_datasets(train_data, val_data)
    found = search_run(run, {"mse": "min", "macs": "min"}, data=data, strategy="random",
                       budget=4, seed=0, progress=False)  # fmt: skip
    assert len(found.history) == 4 and all(math.isfinite(e.metrics["mse"]) for e in found.history)
    # "most-accurate" means the lowest error for a task whose primary metric is minimized.
    _, best = pick(SearchRecord.of(found), "most-accurate")
    assert best == dict(min(found.pareto, key=lambda e: e.metrics["mse"]).config)
    exported = onefit.deploy.export(run, "most-accurate", search=found, data=data,
                                    format="onnx", latency_repeats=3)  # fmt: skip
    card = exported.card
    assert (card.evaluation.task, card.evaluation.metric) == ("regression", "mse")
    val = [(x, y) for x, y in zip(*(t.split(64) for t in val_data.tensors))]
    calibration = [(x, y) for x, y in zip(*(t.split(256) for t in train_data.tensors))]
    task = onefit.tasks.create_task("regression")
    remeasured = evaluate_config(onefit.load_supernet(run), card.config, val, calibration,
                                 bn_batches=10, task=task)  # fmt: skip
    assert card.evaluation.fp32 == pytest.approx(remeasured["mse"], rel=1e-4)
    assert card.evaluation.onnx_fp32 == pytest.approx(card.evaluation.fp32, rel=1e-3)
