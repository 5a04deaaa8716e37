"""One way to fail: onefit's exception classes, training settings checked against their
types, and the command line's one handler (user error -> one line and exit 2; internal
error -> one line, a log with the traceback and exit 1; Ctrl-C -> 130)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

import onefit
import onefit.cli
from onefit.errors import (
    Interrupted,
    MissingDependencyError,
    OnefitError,
    UnknownNameError,
    UserError,
    UserTypeError,
)
from onefit.training import TrainConfig

# Not the user's fault: the input passed its checks and the work failed.
NOT_USER_ERRORS = {"TrainingError", "ExportCheckError", "DemoInterrupted"}


def _onefit_exceptions() -> list[type[BaseException]]:
    """Every public exception class of onefit outside :mod:`onefit.errors` (found by
    importing every module).

    Private ones are left out: the command line's ``_UserFailure`` is how click shows an
    error, never raised to a caller of the library.
    """
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(onefit.__path__, "onefit."):
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as error:  # an optional dependency of that module
            if (error.name or "").startswith("onefit"):
                raise
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            public = not cls.__name__.startswith("_") and cls.__module__.startswith("onefit.")
            public = public and cls.__module__ != "onefit.errors"  # the bases themselves
            if issubclass(cls, BaseException) and public:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


EXCEPTIONS = _onefit_exceptions()


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_every_onefit_exception_derives_from_onefit_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, OnefitError)
    if cls.__name__ in NOT_USER_ERRORS:
        assert not issubclass(cls, UserError)
        assert issubclass(cls, RuntimeError)  # as before: `except RuntimeError` still works
    else:
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)


def test_the_exceptions_named_in_the_issue_are_found() -> None:
    names = {cls.__name__ for cls in EXCEPTIONS}
    assert {
        "CheckpointError", "DataError", "ExportCheckError", "ExportError", "LatencyTableError",
        "PickError", "PredictorError", "ProfileMismatchError", "RuntimeUnavailableError",
        "StoreError", "TrainingError",
    } <= names  # fmt: skip


def test_an_unavailable_runtime_is_a_user_error_and_still_a_runtime_error() -> None:
    from onefit.metrics import RuntimeUnavailableError

    assert issubclass(RuntimeUnavailableError, UserError)
    assert issubclass(RuntimeUnavailableError, RuntimeError)


# --- training settings are converted to, and checked against, their field's type --------


@pytest.mark.parametrize(
    ("settings", "field", "expected"),
    [
        ({"weight_decay": "1e-4"}, "weight_decay", 1e-4),  # YAML reads 1e-4 as text
        ({"lr": 1}, "lr", 1.0),
        ({"amp": "false"}, "amp", False),
        ({"amp": "True"}, "amp", True),
        ({"epochs": 3.0}, "epochs", 3),
        ({"seed": "7"}, "seed", 7),
        ({"eval_configs": ["largest"]}, "eval_configs", ("largest",)),
        ({"init_weights": None}, "init_weights", None),
    ],
)
def test_settings_are_converted_to_the_field_type(
    settings: dict[str, Any], field: str, expected: Any
) -> None:
    value = getattr(TrainConfig.from_dict(settings), field)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr": "abc"}, "training setting lr='abc' must be a number (float)"),
        ({"lr": float("nan")}, "training setting lr=nan must be a finite number (float)"),
        ({"momentum": "inf"}, "training setting momentum='inf' must be a finite number"),
        ({"lr": True}, "training setting lr=True must be a number (float)"),
        ({"epochs": 1.5}, "training setting epochs=1.5 must be a whole number (int)"),
        ({"epochs": True}, "training setting epochs=True must be a whole number (int)"),
        ({"amp": "maybe"}, "training setting amp='maybe' must be true or false (bool)"),
        ({"dataset": 3}, "training setting dataset=3 must be a string (str)"),
        ({"init_weights": 3}, "init_weights=3 must be a string (str) or null"),
        ({"strategy_kwargs": [1]}, "strategy_kwargs=[1] must be a table of settings (dict)"),
        ({"eval_configs": "largest"}, "eval_configs='largest' must be a list of str"),
        ({"eval_configs": ["largest", 3]}, "eval_configs[1]=3 must be a string (str)"),
    ],
)
def test_a_setting_of_the_wrong_type_names_the_setting_value_and_type(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_dict(settings)
    assert message in str(caught.value)


# --- the command line's one handler -------------------------------------------------------


class _FakeTrainer:
    """Stands in for the Trainer: records the config the command resolved, trains nothing."""

    configs: ClassVar[list[TrainConfig]] = []

    def __init__(self, config: TrainConfig) -> None:
        self.configs.append(config)
        self.dist = SimpleNamespace(is_main=False)

    def fit(self, **kwargs: Any) -> None:
        return None


@pytest.fixture
def fake_trainer(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    _FakeTrainer.configs = []
    monkeypatch.setattr("onefit.cli.Trainer", _FakeTrainer)
    return _FakeTrainer.configs


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Logs of internal errors without a run dir go under $XDG_CACHE_HOME: keep them here."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_set_a_float_setting_to_text_is_one_line_and_exit_2(fake_trainer: list) -> None:
    result = CliRunner().invoke(onefit.cli.cli, ["train", "--set", "lr=abc"])
    assert result.exit_code == 2, result.output
    assert _lines(result.stderr) == ["Error: training setting lr='abc' must be a number (float)"]
    assert not fake_trainer


def test_set_an_int_setting_to_a_fraction_exits_2(fake_trainer: list) -> None:
    result = CliRunner().invoke(onefit.cli.cli, ["train", "--set", "epochs=1.5"])
    assert result.exit_code == 2
    assert _lines(result.stderr) == [
        "Error: training setting epochs=1.5 must be a whole number (int)"
    ]


@pytest.mark.parametrize("text", ["false", "False"])
def test_set_amp_false_gives_false(fake_trainer: list, text: str) -> None:
    result = CliRunner().invoke(onefit.cli.cli, ["train", "--set", f"amp={text}"])
    assert result.exit_code == 0, result.output
    assert fake_trainer[0].amp is False


def test_a_config_file_value_as_text_is_converted(fake_trainer: list, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("[train]\nweight_decay = '1e-4'\nepochs = 2\n")
    result = CliRunner().invoke(onefit.cli.cli, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert fake_trainer[0].weight_decay == 1e-4 and fake_trainer[0].epochs == 2


def _raise(error: BaseException) -> Any:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    return fail


def test_an_internal_error_exits_1_with_a_message_and_a_log_of_the_traceback(
    monkeypatch: pytest.MonkeyPatch, _logs_in_tmp: Path
) -> None:
    monkeypatch.setattr(onefit.cli, "_build_supernet", _raise(RuntimeError("boom")))
    result = CliRunner().invoke(onefit.cli.cli, ["check", "--samples", "1"])
    assert result.exit_code == 1, result.output
    first, second = _lines(result.stderr)
    assert first.startswith("Error: RuntimeError: boom") and "please report it" in first
    assert "Traceback" not in result.output
    log = Path(second.removeprefix("The full traceback is in "))
    assert log.parent == _logs_in_tmp / "onefit" / "logs" and log.name.startswith("check-")
    text = log.read_text()
    assert "onefit check --samples 1" in text
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert ", in fail\n" in text  # down to the frame that raised


@pytest.mark.parametrize(
    "error", [ValueError("bad value"), TypeError("bad type"), ImportError("no foo")]
)
def test_a_plain_python_error_from_inside_is_an_internal_error_not_the_users_fault(
    monkeypatch: pytest.MonkeyPatch, _logs_in_tmp: Path, error: Exception
) -> None:
    # Every check of user input raises a UserError; a bare ValueError comes from deep
    # inside (torch, numpy, a bug), so it is reported with its log, not blamed on the user.
    monkeypatch.setattr(onefit.cli, "_build_supernet", _raise(error))
    result = CliRunner().invoke(onefit.cli.cli, ["check", "--samples", "1"])
    assert result.exit_code == 1, result.output
    first, _ = _lines(result.stderr)
    assert first.startswith(f"Error: {type(error).__name__}: {error}")
    assert "please report it" in first


def test_the_log_of_a_command_with_a_run_dir_goes_into_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from onefit.training import TrainingError

    monkeypatch.setattr("onefit.cli.write_report", _raise(TrainingError("it broke")))
    result = CliRunner().invoke(onefit.cli.cli, ["report", str(tmp_path)])
    assert result.exit_code == 1
    first, second = _lines(result.stderr)
    assert first == "Error: it broke"  # a onefit failure explains itself
    (log,) = (tmp_path / "logs").glob("report-*.log")
    assert second == f"The full traceback is in {log}"
    assert "TrainingError: it broke" in log.read_text()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UserError("bad input"), 2),
        (UnknownNameError("unknown widget 'x'; known: box"), 2),
        (UserTypeError("bad type"), 2),
        (MissingDependencyError("needs foo: pip install foo"), 2),
    ],
)
def test_user_errors_are_one_line_exit_2_and_never_a_traceback(
    monkeypatch: pytest.MonkeyPatch, _logs_in_tmp: Path, error: Exception, code: int
) -> None:
    monkeypatch.setattr(onefit.cli, "_build_supernet", _raise(error))
    result = CliRunner().invoke(onefit.cli.cli, ["check"])
    assert result.exit_code == code
    assert _lines(result.stderr) == [f"Error: {error}"]
    assert "Traceback" not in result.output
    assert not _logs_in_tmp.exists()  # nothing to log


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--set", "lr=abc"],
        ["train", "--set", "nope=1"],
        ["train", "--config", "missing.toml"],
        ["check", "--supernet", "nope"],
        ["search", "nowhere"],
        ["export", "nowhere"],
        ["report", "nowhere"],
        ["profile", "--run", "nowhere"],
    ],
)
def test_user_errors_of_every_command_print_no_traceback(
    args: list[str], fake_trainer: list
) -> None:
    result = CliRunner().invoke(onefit.cli.cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([line for line in _lines(result.stderr) if line.startswith("Error:")]) == 1


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onefit.cli, "_build_supernet", _raise(KeyboardInterrupt()))
    result = CliRunner().invoke(onefit.cli.cli, ["check"])
    assert result.exit_code == 130
    assert "Traceback" not in result.output


def test_an_interrupted_run_prints_how_to_continue_and_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from onefit.deploy.quickstart import DemoInterrupted

    paused = DemoInterrupted("training paused at step 3/9 (SIGINT); run the same command")
    monkeypatch.setattr("onefit.cli.run_demo", _raise(paused))
    result = CliRunner().invoke(onefit.cli.cli, ["demo", "--run-dir", str(tmp_path)])
    assert result.exit_code == 130
    assert result.stdout.strip() == str(paused)
    assert isinstance(paused, Interrupted) and not (tmp_path / "logs").exists()
