from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

import onefit
from onefit.cli import cli


def test_check_extracts_and_checks_sub_networks() -> None:
    result = CliRunner().invoke(cli, ["check", "--samples", "2", "--image-size", "8"])
    assert result.exit_code == 0, result.output
    assert "all 4 sub-networks match the supernet exactly" in result.output
    assert result.output.count("yes") == 4  # measured MACs/params equal the analytic ones


def test_check_passes_constructor_options() -> None:
    result = CliRunner().invoke(
        cli,
        ["check", "--supernet", "resnet", "--samples", "1", "--image-size", "8",
         "--in-channels", "3", "-o", "base_width=8", "-o", "depth_extras=[0,1]"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "all 3 sub-networks match" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["check", "--supernet", "nope"],
            "Error: unknown supernet 'nope'; known: bert, mobilenetv3, model, resnet, timm, "
            "torchvision, vit",
        ),
        (
            ["check", "-o", "width_mult=-1"],
            "Error: width_mult must be a finite number in (0, 64], got -1",
        ),
        (["check", "-o", "oops"], "expected KEY=VALUE, got 'oops'"),
        (["check", "--samples", "-1"], "Invalid value for '--samples': -1 is not in the range"),
        (["check", "--image-size", "big"], "'big' is not a valid integer"),
        (["check", "--no-such-flag"], "No such option"),
        (["nosuchcommand"], "No such command"),
        (["profile", "--runtime", "tvm"], "unknown runtime 'tvm'; known: compile, eager"),
        (["profile", "--repeats", "0"], "Invalid value for '--repeats': 0 is not in the range"),
        (["profile", "--device", "tpu"], "cannot run on 'tpu' here; available devices"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1


def test_list_and_version() -> None:
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    assert "mobilenetv3" in result.output and "resnet" in result.output
    assert "sandwich" in result.output and "digits" in result.output
    assert onefit.__version__ in CliRunner().invoke(cli, ["--version"]).output


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "onefit", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in done.stdout and "list" in done.stdout


def test_profile_builds_saves_and_checks_a_latency_table(tmp_path) -> None:
    out = tmp_path / "lut.json"
    args = ["profile", "--image-size", "16", "--num-classes", "10", "--threads", "1",
            "-o", "depths=[1,2]", "-o", "kernel_sizes=[3,5]", "-o", "expand_ratios=[3]",
            "--warmup", "1", "--repeats", "3", "--check", "2", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    table = onefit.profiling.LatencyTable.load(out)
    assert f"{len(table.entries)} units measured" in result.output
    assert "MAPE" in result.output and "Kendall tau" in result.output
    assert table.supernet is not None and table.supernet["kwargs"]["depths"] == [1, 2]
