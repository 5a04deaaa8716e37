"""Training settings checked at the boundary: the examples of issue 14, one by one, the
classes of the data against the classifier, and the command line's settings files and
numeric options."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch
from click.testing import CliRunner

import onefit.cli
from onefit.data import from_tensors
from onefit.errors import UserError
from onefit.training import TrainConfig, Trainer, distributed
from onefit.training.trainer import check_classes


class _FakeTrainer:
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


def _run(*args: str) -> Any:
    return CliRunner().invoke(onefit.cli.cli, list(args))


def _error_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# -- the examples of the issue --------------------------------------------------------------
def test_weight_decay_as_text_in_toml_is_the_number(fake_trainer: list, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("[train]\nweight_decay = '1e-4'\n")
    result = _run("train", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert fake_trainer[0].weight_decay == 1e-4 and type(fake_trainer[0].weight_decay) is float


def test_device_gpu_lists_the_devices() -> None:
    with pytest.raises(UserError, match=r"device='gpu' must be 'auto', 'cpu', 'cuda'.*'mps'"):
        TrainConfig.from_dict({"device": "gpu"})


def test_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = TrainConfig.from_dict({"device": "cuda"})  # a run may be set up elsewhere
    with pytest.raises(UserError, match=r"device='cuda': CUDA is not available.*'cpu'"):
        distributed.setup(config.device)


def test_a_cuda_index_past_the_devices_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"device='cuda:3': this machine has 1 CUDA device"):
        distributed.setup("cuda:3")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 1.5}, "epochs=1.5 must be a whole number (int)"),
        ({"epochs": "1.5"}, "epochs='1.5' must be a whole number (int)"),
        ({"epochs": -1}, "epochs=-1 must be a whole number in 0..1000000"),
        ({"lr": math.inf}, "lr=inf must be a finite number (float)"),
        ({"lr": 0}, "lr=0 must be a finite number > 0 (float)"),
        ({"momentum": math.nan}, "momentum=nan must be a finite number (float)"),
        ({"momentum": 1.0}, "momentum=1.0 must be a finite number in [0, 1)"),
        ({"weight_decay": -1e-4}, "weight_decay=-0.0001 must be a finite number >= 0"),
        ({"batch_size": 10**12}, "batch_size=1000000000000 must be a whole number in 1..1048576"),
        ({"label_smoothing": 1}, "label_smoothing=1 must be a finite number in [0, 1)"),
        ({"num_workers": -1}, "num_workers=-1 must be a whole number in 0..256 (int) or null"),
        ({"amp": "maybe"}, "amp='maybe' must be true or false (bool)"),
        ({"tensorboard": 2}, "tensorboard=2 must be true or false (bool)"),
        ({"eval_configs": []}, "eval_configs=[] must be a non-empty list"),
        ({"eval_configs": ["{"]}, "eval_configs[0]='{' must be 'smallest', 'largest' or a config"),
        ({"init_weights": ""}, "init_weights='' must be the path of a state-dict file"),
        ({"init_weights": 0}, "init_weights=0 must be a string (str) or null"),
        ({"supernet_kwargs": {"dropout": math.nan}}, "supernet_kwargs.dropout=nan must be"),
        ({"supernet_kwargs": {"dropout": 1.0}}, "supernet_kwargs.dropout=1.0 must be"),
        ({"strategy_kwargs": {"x": math.inf}}, "strategy_kwargs.x=inf must be a finite number"),
        ({"strategy_kwargs": {1: 2}}, "strategy_kwargs has a key 1 that is not text"),
        ({"strategy": "nope"}, "unknown training strategy 'nope' (training setting strategy)"),
        ({"augment": "nope"}, "nope"),
        ({"seed": -1}, "seed=-1 must be a whole number in 0..4294967295"),
        ({"std": [0.5, 0.0]}, "std[1]=0.0 must be a list of finite numbers > 0"),
        ({"mean": [0.5], "std": [0.2, 0.2]}, "mean=(0.5,) must be given with std"),
        ({"warmup_epochs": 3, "epochs": 2}, "warmup_epochs=3.0 must be in [0, epochs]"),
    ],
)
def test_bad_settings_name_the_setting_the_value_and_what_is_allowed(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError) as caught:
        TrainConfig.from_dict(settings)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "field", "expected"),
    [
        ({"amp": "yes"}, "amp", True),  # converted: yes/no are how YAML 1.1 spells bools
        ({"amp": "NO"}, "amp", False),
        ({"amp": 1}, "amp", True),
        ({"tensorboard": "false"}, "tensorboard", False),
        ({"progress": "0"}, "progress", False),
        ({"epochs": "3"}, "epochs", 3),
        ({"epochs": 3.0}, "epochs", 3),
        ({"lr": "1e-3"}, "lr", 1e-3),
        ({"lr": 1}, "lr", 1.0),
        ({"num_workers": None}, "num_workers", None),
        ({"init_weights": None}, "init_weights", None),
        ({"device": "cuda:1"}, "device", "cuda:1"),
        ({"eval_configs": ["largest", '{"r": 28}']}, "eval_configs", ("largest", '{"r": 28}')),
        ({"mean": [0.5], "std": ["0.25"]}, "std", (0.25,)),
    ],
)
def test_good_settings_parse_to_what_they_spell(
    settings: dict[str, Any], field: str, expected: Any
) -> None:
    value = getattr(TrainConfig.from_dict(settings), field)
    assert value == expected and type(value) is type(expected)


def test_a_config_made_directly_is_checked_too() -> None:
    with pytest.raises(UserError, match="lr=nan"):
        TrainConfig(lr=math.nan)
    config = TrainConfig()
    config.amp = "no"  # type: ignore[assignment]
    config.validate()  # the Trainer validates again: text spellings converted
    assert config.amp is False
    config.epochs = -1
    with pytest.raises(UserError, match="epochs=-1"):
        config.validate()


def test_replace_keeps_the_checks() -> None:
    with pytest.raises(UserError, match="batch_size=0"):
        TrainConfig().replace(batch_size=0)
    assert TrainConfig().replace(batch_size="32").batch_size == 32


# -- classes of the data against the classifier ----------------------------------------------
def _data(labels: torch.Tensor, **kwargs: Any) -> Any:
    return from_tensors(torch.rand(len(labels), 1, 8, 8), labels, val_fraction=0.25, **kwargs)


def test_num_classes_smaller_than_the_data_is_refused_naming_both() -> None:
    data = _data(torch.arange(40) % 4)
    with pytest.raises(UserError, match=r"num_classes=3 is smaller than the 4 classes"):
        check_classes(data, 3)


def test_num_classes_larger_than_the_data_is_refused() -> None:
    data = _data(torch.arange(40) % 4)
    with pytest.raises(UserError, match=r"num_classes=10 is larger .* never be trained"):
        check_classes(data, 10)
    check_classes(data, 4)
    check_classes(data, None)


def test_one_class_is_refused() -> None:
    with pytest.raises(UserError, match=r"one class: accuracy would be trivially 1\.0"):
        check_classes(_data(torch.zeros(40, dtype=torch.long)))
    # Two classes in the data, but only one of them in the train split.
    labels = torch.zeros(40, dtype=torch.long)
    data = _data(labels, num_classes=2)
    with pytest.raises(UserError, match="one class"):
        check_classes(data)


def test_the_trainer_checks_the_classes_before_building_the_supernet(tmp_path: Path) -> None:
    data = _data(torch.arange(40) % 4)
    small = {"width_mult": 0.5, "depths": [1, 2], "expand_ratios": [2, 3]}
    config = TrainConfig(run_dir=str(tmp_path), progress=False, tensorboard=False,
                         supernet_kwargs={**small, "num_classes": 2}, device="cpu")  # fmt: skip
    with pytest.raises(UserError, match="num_classes=2 is smaller than the 4 classes"):
        Trainer(config, data)
    one = _data(torch.zeros(40, dtype=torch.long))
    with pytest.raises(UserError, match="one class"):
        Trainer(config.replace(supernet_kwargs=small), one)


def test_an_unknown_supernet_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    config = TrainConfig(supernet="nope", dataset=str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"unknown supernet 'nope' .*known: .*mobilenetv3"):
        Trainer(config)


# -- settings files and --set --------------------------------------------------------------
def test_a_non_utf8_config_names_the_file(fake_trainer: list, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_bytes(b"[train]\ndataset = 'caf\xe9'\n")
    line = _error_line(_run("train", "--config", str(config)))
    assert str(config) in line and "not UTF-8" in line and "0xe9" in line
    assert not fake_trainer


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("run.toml", "[train]\nepochs = \n", "line 2"),
        ("run.json", '{"train": {"epochs": 2,}}', "line 1"),
        ("run.yaml", "train:\n  epochs: 2\n   lr: 1\n", "line 3"),
    ],
)
def test_a_syntax_error_is_one_line_with_file_and_position(
    fake_trainer: list, tmp_path: Path, name: str, text: str, where: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    line = _error_line(_run("train", "--config", str(config)))
    assert str(config) in line and where in line


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("run.json", "[1, 2]", "expected a table of settings at the top, got a list"),
        ("run.yaml", "", "got nothing"),
        ("run.yaml", "train:\n  1: 2\n", "setting name 1 in [train] is not text"),
        ("run.toml", "train = 3\n", "[train] must be a table"),
    ],
)
def test_a_config_that_is_not_a_table_of_settings(
    fake_trainer: list, tmp_path: Path, name: str, text: str, message: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    assert message in _error_line(_run("train", "--config", str(config)))


def test_set_values_are_parsed_to_the_setting_type(fake_trainer: list) -> None:
    result = _run(
        "train", "--set", "tensorboard=false", "--set", "amp=no", "--set", "run_dir=2024",
        "--set", "weight_decay=1e-4", "--set", "init_weights=null", "--set", "epochs=2",
        "--set", "strategy_kwargs={\"num_random\": 1}", "--set", "strategy_kwargs.x=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = fake_trainer[0]
    assert config.tensorboard is False and config.amp is False and config.run_dir == "2024"
    assert config.weight_decay == 1e-4 and config.init_weights is None and config.epochs == 2
    assert config.strategy_kwargs == {"num_random": 1, "x": 2}


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["search", "runs/x", "--budget", "0"], "--budget"),
        (["search", "runs/x", "--batch-size", "-1"], "--batch-size"),
        (["search", "runs/x", "--seed", "-3"], "--seed"),
        (["export", "runs/x", "--format", "exe"], "--format"),
        (["export", "runs/x", "--threads", "0"], "--threads"),
        (["profile", "--threads", "0"], "--threads"),
        (["profile", "--batch-size", "0"], "--batch-size"),
        (["check", "--image-size", "0"], "--image-size"),
        (["check", "--num-classes", "0"], "--num-classes"),
        (["train", "--epochs", "-1"], "--epochs"),
        (["train", "--lr", "0"], "--lr"),
        (["demo", "--budget", "100000000000"], "--budget"),
    ],
)
def test_numeric_options_are_range_checked(args: list[str], option: str) -> None:
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output


def test_a_bad_value_in_a_command_table_names_the_option(tmp_path: Path) -> None:
    config = tmp_path / "all.toml"
    config.write_text("[search]\nbudget = 0\n")
    result = _run("--config", str(config), "search", str(tmp_path / "run"))
    assert result.exit_code == 2 and "--budget" in result.output, result.output
