"""End to end: train a small supernet, profile it, search it under constraints (Python and CLI)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

import onefit
from onefit.cli import cli
from onefit.metrics.device import DeviceProfile
from onefit.profiling import LatencyTableError
from onefit.search.supernet import search_run

SUPERNET_KWARGS = {"depths": [1, 2], "kernel_sizes": [3, 5], "expand_ratios": [2, 4],
                   "width_mult": 0.5}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    onefit.train(epochs=3, run_dir=str(run), progress=False, strategy="sandwich",
                 supernet_kwargs=SUPERNET_KWARGS, tensorboard=False)  # fmt: skip
    return run


def test_constrained_pareto_set_of_a_trained_supernet(run_dir):
    net = onefit.load_supernet(run_dir)
    limit = (net.macs(net.space.smallest()) + net.macs(net.space.largest())) / 2
    result = search_run(run_dir, {"accuracy": "max", "macs": "min"}, strategy="linas",
                        budget=16, constraints=[f"macs <= {limit}"], progress=False,
                        strategy_kwargs={"initial": 6})  # fmt: skip
    assert len(result.history) == 16
    assert result.pareto and all(e.metrics["macs"] <= limit for e in result.pareto)
    assert all(e.metrics["macs"] == net.macs(e.config) for e in result.history)
    # The trained sub-networks are far better than chance (10 classes).
    assert max(e.metrics["accuracy"] for e in result.pareto) > 0.5


def test_cli_profile_then_search_with_latency_table(run_dir, tmp_path):
    lut = tmp_path / "lut.json"
    args = ["profile", "--run", str(run_dir), "--warmup", "1", "--repeats", "3", "--check", "1",
            "--out", str(lut)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "search"
    args = ["search", str(run_dir), "--objective", "accuracy:max", "--objective", "latency_ms:min",
            "--lut", str(lut), "--constraint", "macs <= 1e12", "--strategy", "random",
            "--budget", "6", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Pareto set" in result.output and "hypervolume" in result.output
    # Where the table was measured is said, and that it was not checked against a target.
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "measured on" in said and "not checked" in said
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto and all("latency_ms" in p["metrics"] for p in pareto)
    assert (out / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "results.csv").read_text().splitlines()) == 7
    db = sqlite3.connect(out / "results.db")
    kinds = dict(db.execute("SELECT metric, kind FROM measurements GROUP BY metric"))
    assert kinds == {"accuracy": "measured", "top5": "measured", "loss": "measured",
                     "macs": "cheap", "params": "cheap", "latency_ms": "predicted"}  # fmt: skip
    profile = db.execute("SELECT profile FROM measurements WHERE metric='latency_ms'").fetchone()
    assert json.loads(profile[0])["runtime"] == "eager"
    # Running it again resumes: nothing new is evaluated.
    again = CliRunner().invoke(cli, args)
    assert (
        again.exit_code == 0 and db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 6
    )


def test_measured_latency_and_memory_evaluators(run_dir):
    result = search_run(run_dir, {"accuracy": "max", "peak_memory_bytes": "min"}, budget=3,
                        strategy="random", measure_runtime="eager", measure_memory=True,
                        progress=False)  # fmt: skip
    net = onefit.load_supernet(run_dir)
    for e in result.history:
        assert e.metrics["measured_latency_ms"] > 0
        model = net.extract(e.config)
        expected = onefit.metrics.peak_memory(model, net.input_shape(e.config)).peak_bytes
        assert e.metrics["peak_memory_bytes"] == expected


def test_a_latency_table_built_in_memory_for_the_same_supernet_is_used(run_dir):
    net = onefit.load_supernet(run_dir)
    table = onefit.profiling.build_latency_table(net, warmup=0, repeats=1, progress=False)
    result = search_run(run_dir, {"accuracy": "max", "latency_ms": "min"}, budget=3,
                        latency_table=table, strategy="random", progress=False)  # fmt: skip
    assert all(e.metrics["latency_ms"] == table.predict(e.config) for e in result.history)


def test_a_latency_table_of_another_supernet_is_refused(run_dir, tmp_path):
    other = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=8,
                                   kernel_sizes=(3,), expand_ratios=(3,), depths=(1,))  # fmt: skip
    table = onefit.profiling.build_latency_table(other, warmup=0, repeats=1, progress=False)
    with pytest.raises(LatencyTableError, match=r"built for .* not this supernet"):
        search_run(run_dir, {"accuracy": "max"}, latency_table=table, budget=2, progress=False)


def test_cli_target_profile_refuses_a_table_of_another_device(run_dir, tmp_path):
    net = onefit.load_supernet(run_dir)
    table = onefit.profiling.build_latency_table(
        net, warmup=0, repeats=1, threads=1, progress=False
    )
    lut = tmp_path / "lut.json"
    table.save(lut)
    base = ["search", str(run_dir), "--objective", "accuracy:max", "--objective",
            "latency_ms:min", "--lut", str(lut), "--strategy", "random",
            "--budget", "2"]  # fmt: skip
    # The table was measured here, with these settings: this machine is its profile.
    ok = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a"),
                                  "--target-profile", "this-machine"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "not checked" not in " ".join(ok.output.split())
    # A target with 4 threads (a profile file, as DeviceProfile.save writes it).
    other = tmp_path / "phone.json"
    DeviceProfile.from_dict({**table.profile.to_dict(), "threads": 4, "name": "phone"}).save(other)
    refused = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "b"),
                                       "--target-profile", str(other)])  # fmt: skip
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2, refused.output
    assert "not on the target profile 'phone'" in said
    assert "threads: 1 vs 4" in said and "Traceback" not in said
    assert not (tmp_path / "b" / "results.db").exists()  # refused before anything ran
    # A profile file that is not one, and --target-profile without a table.
    (tmp_path / "bad.json").write_text('{"runtime": "eager", "threads": "four"}')
    bad = CliRunner().invoke(cli, [*base, "--target-profile", str(tmp_path / "bad.json")])
    said = " ".join(bad.output.split())
    assert bad.exit_code == 2 and "bad device profile" in said, bad.output
    assert "threads (expected int, got 'four')" in said
    alone = CliRunner().invoke(cli, ["search", str(run_dir), "--target-profile", "this-machine"])
    assert alone.exit_code == 2 and "give --lut too" in " ".join(alone.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "accuracy:up"], "expected NAME:min or NAME:max"),
        (["--objective", "latency_ms:min"], "latency_ms needs a latency table"),
        (["--constraint", "flops <= 1"], "unknown metric 'flops'"),
    ],
)
def test_cli_search_usage_errors(run_dir, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["search", str(run_dir), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_cli_search_of_a_folder_without_a_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["search", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no such checkpoint file" in result.output


def test_one_config_file_sets_options_of_every_command(run_dir, tmp_path):
    config = tmp_path / "onefit.toml"
    config.write_text(
        '[search]\nstrategy = "random"\nbudget = 3\nobjective = ["accuracy:max", "macs:min"]\n'
        '[report]\nout = "' + str(tmp_path / "report") + '"\n'
    )
    out = tmp_path / "search"
    result = CliRunner().invoke(cli, ["--config", str(config), "search", str(run_dir),
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    count = "SELECT COUNT(*) FROM evaluations"
    assert sqlite3.connect(out / "results.db").execute(count).fetchone()[0] == 3
    # A flag overrides the file: the same search resumed with a larger budget.
    result = CliRunner().invoke(cli, ["--config", str(config), "search", str(run_dir),
                                      "--out", str(out), "--budget", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sqlite3.connect(out / "results.db").execute(count).fetchone()[0] == 5
    config.write_text("[search]\nbudgett = 3\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "search", str(run_dir)])
    assert result.exit_code == 2 and "unknown option(s) ['budgett']" in result.output
    config.write_text("[serch]\nbudget = 3\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "search", str(run_dir)])
    assert result.exit_code == 2 and "[serch] is not a command's table" in result.output
