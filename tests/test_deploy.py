"""The quickstart end to end, exports checked against re-measured figures, the report."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import onefit
from onefit.cli import cli
from onefit.deploy import ModelCard, load_exported
from onefit.metrics import measure_latency
from onefit.metrics.runtimes import OnnxRuntime
from onefit.search.supernet import run_data
from onefit.training import resize

PICKS = ("smallest", "knee", "most-accurate")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(
        cli, ["demo", "--run-dir", str(run), "--epochs", "2", "--budget", "10"]
    )
    assert result.exit_code == 0, result.output
    return run, result.output


def session(path):
    return OnnxRuntime().session(path.read_bytes(), "cpu", 1)


def onnx_accuracy(path, config, data):
    x, y = data.val_tensors()
    (logits,) = session(path).run(None, {"input": resize(x, int(config["r"])).numpy()})
    return float((np.argmax(logits, axis=1) == y.numpy()).mean())


def test_demo_writes_every_stage(demo_run):
    run, output = demo_run
    for name in ("config.json", "metrics.jsonl", "checkpoints/last.pt", "latency_table.json",
                 "search/results.db", "report/index.html", "report/training.png",
                 "report/pareto_latency_ms.png"):  # fmt: skip
        assert (run / name).is_file(), name
    for pick in PICKS:
        assert (run / "exports" / f"{pick}-onnx" / "model.onnx").is_file()
        assert (run / "exports" / f"{pick}-onnx" / "model_card.json").is_file()
    assert "exported sub-networks" in output and "report:" in output


@pytest.mark.parametrize("pick", PICKS)
def test_model_card_equals_remeasured_figures(demo_run, pick, tmp_path):
    run, _ = demo_run
    folder = run / "exports" / f"{pick}-onnx"
    card = ModelCard.load(folder / "model_card.json")
    config = card.config
    data = run_data(run)
    # Accuracy of the exported ONNX file, re-measured in ONNX Runtime.
    assert onnx_accuracy(folder / "model.onnx", config, data) == card.evaluation.onnx_fp32
    # Parameters and MACs, re-counted on the same sub-network exported as a state dict.
    pt = onefit.deploy.export(run, config.to_json(), format="pt", out=tmp_path, latency_repeats=5)
    model = load_exported(pt.model_path)
    shape = card.input.shape[1:]
    counted = onefit.count(model, shape)
    assert (counted.params, counted.macs) == (card.params, card.macs)
    # The ONNX model computes what the PyTorch model computes.
    x = resize(data.val_tensors()[0][:16], int(config["r"]))
    (out,) = session(folder / "model.onnx").run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.abs(out - model(x).numpy()).max() <= 1e-4
    # Latency: same profile, re-measured; stated tolerance: within a factor of 3 (a shared
    # CPU drifts between measurements taken minutes apart).
    assert card.latency.profile.runtime == "onnxruntime"
    again = measure_latency(model, shape, runtime="onnxruntime", threads=1, repeats=30)
    assert 1 / 3 <= again.median_ms / card.latency.median_ms <= 3.0
    # The card's accuracy is the one the search chose it by (same BN recalibration).
    searched = next(e for e in onefit.deploy.load_search(run).history
                    if dict(e.config) == config)  # fmt: skip
    assert card.evaluation.fp32 == searched.metrics["accuracy"]
    assert card.checks.max_abs_diff_vs_supernet <= 1e-4
    preprocessing = card.input.preprocessing
    assert preprocessing.mean == data.mean and preprocessing.std == data.std
    assert preprocessing.divide_by == data.train.divisor


def test_picks_are_the_ends_and_the_knee_of_the_front(demo_run):
    run, _ = demo_run
    cards = {p: ModelCard.load(run / "exports" / f"{p}-onnx" / "model_card.json") for p in PICKS}
    front = sorted(onefit.deploy.load_search(run).pareto, key=lambda e: e.metrics["latency_ms"])
    assert cards["smallest"].config == front[0].config
    assert cards["most-accurate"].config == max(front, key=lambda e: e.metrics["accuracy"]).config
    # The knee, computed here independently: the largest drop below the chord between the
    # two ends, both axes scaled to [0, 1].
    xs = np.array([e.metrics["latency_ms"] for e in front])
    ys = np.array([e.metrics["accuracy"] for e in front])
    xs, ys = (xs - xs.min()) / np.ptp(xs), (ys - ys.min()) / np.ptp(ys)
    chord = ys[0] + (ys[-1] - ys[0]) * (xs - xs[0]) / (xs[-1] - xs[0])
    # With two points there is no bend: the knee is then the more accurate one.
    knee = front[-1] if len(front) <= 2 else front[int(np.argmax(ys - chord))]
    assert cards["knee"].config == knee.config


def test_demo_resumes_without_redoing_finished_stages(demo_run):
    run, _ = demo_run
    before = onefit.deploy.load_search(run).history
    result = CliRunner().invoke(cli, ["demo", "--run-dir", str(run), "--epochs", "2",
                                      "--budget", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert onefit.deploy.load_search(run).history == before


def test_the_demo_again_with_other_threads_says_how_to_go_on(demo_run):
    # Its latency table and search belong to 1 thread: it stops with the way forward.
    run, _ = demo_run
    result = CliRunner().invoke(cli, ["demo", "--run-dir", str(run), "--epochs", "2",
                                      "--budget", "10", "--threads", "2"])  # fmt: skip
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "threads: 1 vs 2" in said and "same --threads" in said and "another --run-dir" in said
    assert "Traceback" not in said


def test_int8_and_torchscript_exports(demo_run, tmp_path):
    run, _ = demo_run
    result = CliRunner().invoke(cli, ["export", str(run), "--pick", "most-accurate", "--int8",
                                      "--out", str(tmp_path / "int8")])  # fmt: skip
    assert result.exit_code == 0, result.output
    card = ModelCard.load(tmp_path / "int8" / "model_card.json")
    int8, onnx_fp32 = card.evaluation.int8, card.evaluation.onnx_fp32
    assert int8 is not None and onnx_fp32 is not None and card.latency_int8 is not None
    assert 0 <= int8 <= 1 and card.evaluation.int8_drop == pytest.approx(onnx_fp32 - int8)
    data = run_data(run)
    assert onnx_accuracy(tmp_path / "int8" / "model_int8.onnx", card.config, data) == int8
    result = CliRunner().invoke(cli, ["export", str(run), "--pick", "smallest", "--format",
                                      "torchscript", "--out", str(tmp_path / "ts")])  # fmt: skip
    assert result.exit_code == 0, result.output
    scripted = torch.jit.load(str(tmp_path / "ts" / "model.torchscript.pt"))
    card = ModelCard.load(tmp_path / "ts" / "model_card.json")
    assert card.checks.torchscript_max_abs_diff_vs_pytorch is not None
    x = torch.randn(2, *card.input.shape[1:])
    with torch.no_grad():
        reference = load_exported(
            onefit.deploy.export(run, card.config.to_json(), format="pt",
                                 out=tmp_path / "pt", latency_repeats=3).model_path
        )(x)  # fmt: skip
        assert torch.allclose(scripted(x), reference, atol=1e-5)


def test_a_constraint_pick_takes_the_most_accurate_that_fits(demo_run, tmp_path):
    run, _ = demo_run
    record = onefit.deploy.load_search(run)
    limit = float(np.median([e.metrics["latency_ms"] for e in record.pareto]))
    _, config = onefit.deploy.pick(record, f"latency_ms <= {limit}")
    fitting = [e for e in record.pareto if e.metrics["latency_ms"] <= limit]
    assert dict(max(fitting, key=lambda e: e.metrics["accuracy"]).config) == config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "{run}", "--format", "tflite"], "'tflite' is not one of"),
        (["export", "{run}", "--pick", "latency_ms <= "], "cannot parse constraint"),
        (["export", "{run}", "--pick", "latency_ms <= 0"], "no Pareto sub-network satisfies"),
        (["export", "{run}", "--format", "pt", "--int8"], "use it with --format onnx"),
        (["export", "{missing}"], "no such checkpoint file"),
        (["export", "{run}", "--bogus"], "No such option"),
        (["export", "{run}", "--threads", "0"], "0 is not in the range x>=1"),
        (["demo", "--run-dir", "{run}", "--epochs", "3", "--budget", "10"], "planned"),
        (["report", "{missing}"], "is not a run directory"),
    ],
)
def test_deploy_usage_errors(demo_run, tmp_path, args, message):
    run, _ = demo_run
    filled = [a.format(run=run, missing=tmp_path / "nowhere") for a in args]
    result = CliRunner().invoke(cli, filled)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1


def test_report_renders_in_headless_chromium(demo_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    run, _ = demo_run
    page = run / "report" / "index.html"
    html = page.read_text()
    assert "data:image/png;base64," in html and "<script" in html  # self-contained
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 'data-rendered="yes"' in done.stdout, done.stderr[-2000:]
    assert "Pareto front" in done.stdout
