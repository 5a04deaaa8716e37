"""Fuzzing the training settings: generated values for every kind of TrainConfig field
(wrong types, NaN/inf, negative, huge, out of range, empty text, text spellings, unknown
keys), through :meth:`TrainConfig.from_dict` ("settings") and through the command line's
``--set`` and ``--config`` files, broken and non-UTF-8 ones too ("settings-cli").

A bad value must give a UserError naming the setting; a good one must be accepted with
the value it spells (``"1e-4"`` -> 0.0001, ``"no"`` -> False).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onefit.training import TrainConfig
from onefit.training.config import (
    AMP_DTYPES,
    BAD_ITEM_POLICIES,
    BOOL_TEXT,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MAX_STEPS,
    MAX_WORKERS,
    OPTIMIZERS,
)
from tests.fuzz.harness import expect_clean, expect_clean_cli, fuzz_settings

FIELDS = sorted(f for f in TrainConfig.__dataclass_fields__)
DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


@dataclass(frozen=True)
class Case:
    """One generated setting: ``good`` ones must parse to ``expected``."""

    name: str
    value: Any
    good: bool
    expected: Any = None

    def __repr__(self) -> str:
        return f"{self.name}={self.value!r} ({'good' if self.good else 'bad'})"


def _is_float_text(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _is_int_text(text: str) -> bool:
    if _is_float_text(text):
        return True
    try:
        int(text.strip())
    except ValueError:
        return False
    return True


NOT_A_NUMBER_TEXT = st.text(max_size=8).filter(lambda t: not _is_int_text(t))
OTHER_TYPES = st.one_of(
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
NON_FINITE = st.sampled_from(
    [math.nan, math.inf, -math.inf, "nan", "inf", "-inf", "1e999", 10**400]
)


# -- floats ---------------------------------------------------------------------------------
# name: (low, high, low excluded, high excluded); None: unbounded.
FLOATS: dict[str, tuple[float, float | None, bool, bool]] = {
    "lr": (0.0, None, True, False),
    "momentum": (0.0, 1.0, False, True),
    "weight_decay": (0.0, None, False, False),
    "label_smoothing": (0.0, 1.0, False, True),
    "temperature": (0.0, None, True, False),
    "grad_clip": (0.0, None, False, False),
    "val_fraction": (0.0, 1.0, True, True),
    "warmup_epochs": (0.0, 10.0, False, False),  # at most epochs (10 by default)
}


@st.composite
def float_cases(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(sorted(FLOATS)))
    low, high, low_open, high_open = FLOATS[name]
    if draw(st.booleans()):
        x = draw(
            st.floats(low, high, exclude_min=low_open, exclude_max=high_open,
                      allow_nan=False, allow_infinity=False)
        )  # fmt: skip
        spelling = draw(st.sampled_from(["raw", "text", "padded", "int"]))
        if spelling == "text":
            return Case(name, repr(x), True, x)
        if spelling == "padded":
            return Case(name, f" {x!r}\t", True, x)
        if spelling == "int" and x.is_integer() and abs(x) < 2**53:
            return Case(name, int(x), True, x)
        return Case(name, x, True, x)
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False,
                      allow_infinity=False)  # fmt: skip
    options = [below, NON_FINITE, NOT_A_NUMBER_TEXT, st.booleans(), OTHER_TYPES]
    if high is not None:
        above = st.floats(min_value=high, exclude_min=not high_open, allow_nan=False,
                          allow_infinity=False)  # fmt: skip
        options.append(above)
    value = draw(st.one_of(options))
    if isinstance(value, float) and draw(st.booleans()):
        value = repr(value)  # the same bad value as text
    return Case(name, value, False)


# -- integers -------------------------------------------------------------------------------
# name: (low, high, None allowed)
INTS: dict[str, tuple[int, int, bool]] = {
    "epochs": (0, MAX_EPOCHS, False),
    "batch_size": (1, MAX_BATCH_SIZE, False),
    "bn_batches": (1, MAX_STEPS, False),
    "log_every": (1, MAX_STEPS, False),
    "seed": (0, MAX_SEED, False),
    "num_workers": (0, MAX_WORKERS, True),
    "image_size": (1, MAX_IMAGE_SIZE, True),
}


@st.composite
def int_cases(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(sorted(INTS)))
    low, high, optional = INTS[name]
    if draw(st.booleans()):
        if optional and draw(st.integers(0, 5)) == 0:
            return Case(name, None, True, None)
        i = draw(st.integers(low, high))
        spelling = draw(st.sampled_from(["raw", "text", "padded", "float"]))
        if spelling == "text":
            return Case(name, str(i), True, i)
        if spelling == "padded":
            return Case(name, f"  {i} ", True, i)
        if spelling == "float" and i < 2**53:
            return Case(name, float(i), True, i)
        return Case(name, i, True, i)
    options = [
        st.integers(max_value=low - 1),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
        NON_FINITE,
        NOT_A_NUMBER_TEXT,
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.just("1.5"),
    ]
    options.append(st.integers(min_value=high + 1))
    if not optional:
        options.append(st.none())
    value = draw(st.one_of(options))
    if isinstance(value, int) and not isinstance(value, bool) and draw(st.booleans()):
        value = str(value)  # the same bad value as text
    return Case(name, value, False)


# -- bools ----------------------------------------------------------------------------------
BOOLS = ["amp", "channels_last", "progress", "tensorboard"]


@st.composite
def bool_cases(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(BOOLS))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["raw", "text", "number"]))
        if kind == "raw":
            b = draw(st.booleans())
            return Case(name, b, True, b)
        if kind == "number":
            i = draw(st.sampled_from([0, 1]))
            return Case(name, i, True, bool(i))
        word = draw(st.sampled_from(sorted(BOOL_TEXT)))
        spelled = "".join(c.upper() if draw(st.booleans()) else c for c in word)
        return Case(name, spelled, True, BOOL_TEXT[word])
    value = draw(
        st.one_of(
            st.text(max_size=6).filter(lambda t: t.strip().lower() not in BOOL_TEXT),
            st.integers().filter(lambda i: i not in (0, 1)),
            st.floats(),
            OTHER_TYPES,
        )
    )
    return Case(name, value, False)


# -- names and text -------------------------------------------------------------------------
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "amp_dtype": AMP_DTYPES,
    "bad_items": tuple(BAD_ITEM_POLICIES),
    "strategy": ("deps", "progressive", "sandwich", "sorted"),
    "task": ("classification", "regression"),
    "device": ("auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"),
}
TEXTS = ["dataset", "run_dir", "supernet"]


@st.composite
def text_cases(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from([*sorted(CHOICES), *TEXTS, "init_weights"]))
    good = draw(st.booleans())
    if name in CHOICES:
        allowed = CHOICES[name]
        if good:
            value = draw(st.sampled_from(allowed))
            return Case(name, value, True, value)
        ok = (lambda t: DEVICE.fullmatch(t)) if name == "device" else (lambda t: t in allowed)
        bad = st.text(max_size=10).filter(lambda t: not ok(t))
        return Case(name, draw(st.one_of(bad, st.integers(), st.booleans(), OTHER_TYPES)), False)
    if good:
        if name == "init_weights" and draw(st.booleans()):
            return Case(name, None, True, None)
        value = draw(st.text(min_size=1, max_size=12))
        return Case(name, value, True, value)
    bad_types = st.one_of(
        st.just(""), st.integers(), st.floats(), st.booleans(), st.lists(st.text())
    )
    if name != "init_weights":
        bad_types = st.one_of(bad_types, st.none())
    return Case(name, draw(bad_types), False)


# -- lists and tables -----------------------------------------------------------------------
FINITE = st.floats(allow_nan=False, allow_infinity=False)
CONFIG_JSON = st.dictionaries(
    st.text(min_size=1, max_size=4), st.integers(0, 9), min_size=1, max_size=3
).map(json.dumps)
JSON_VALUES = st.one_of(st.integers(-(10**6), 10**6), FINITE, st.text(max_size=5), st.booleans())


@st.composite
def table_cases(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(["eval_configs", "stats", "strategy_kwargs", "supernet_kwargs"]))
    good = draw(st.booleans())
    if name == "eval_configs":
        if good:
            entries = st.one_of(st.sampled_from(["smallest", "largest"]), CONFIG_JSON)
            value = draw(st.lists(entries, min_size=1, max_size=3))
            return Case(name, value, True, tuple(value))
        bad_entry = st.one_of(
            st.text(max_size=6).filter(lambda t: t not in ("smallest", "largest")),
            st.integers(), st.just("{"), st.just("{}"), st.just("[1]"),
        )  # fmt: skip
        value = draw(st.one_of(st.just([]), st.just("smallest"), st.integers(),
                               st.lists(bad_entry, min_size=1, max_size=3)))  # fmt: skip
        return Case(name, value, False)
    if name == "stats":  # mean and std, given together
        channels = draw(st.integers(1, 4))
        mean = draw(st.lists(FINITE, min_size=channels, max_size=channels))
        std = draw(st.lists(st.floats(min_value=0, exclude_min=True, allow_infinity=False),
                            min_size=channels, max_size=channels))  # fmt: skip
        if good:
            return Case("mean", {"mean": mean, "std": std}, True, (tuple(mean), tuple(std)))
        which = draw(st.sampled_from(["mean", "std"]))
        spoilt = {"mean": list(mean), "std": list(std)}
        how = draw(st.sampled_from(["nan", "inf", "negative", "text", "length", "type"]))
        target = spoilt[which]
        i = draw(st.integers(0, len(target) - 1))
        if how == "nan":
            target[i] = math.nan
        elif how == "inf":
            target[i] = -math.inf if draw(st.booleans()) else math.inf
        elif how == "negative":
            which, spoilt["std"][i] = "std", -abs(spoilt["std"][i]) if draw(st.booleans()) else 0.0
        elif how == "text":
            target[i] = draw(NOT_A_NUMBER_TEXT)
        elif how == "length":
            which, spoilt["mean"] = "mean", [*mean, 0.5]
        else:
            spoilt[which] = draw(st.one_of(st.text(max_size=3), st.integers(), st.just({})))
        return Case(which, spoilt, False)
    kwargs = draw(st.dictionaries(st.text(min_size=1, max_size=6), JSON_VALUES, max_size=3))
    if good:
        if name == "supernet_kwargs":
            kwargs.pop("dropout", None)
            kwargs.pop("num_classes", None)
            if draw(st.booleans()):
                kwargs["dropout"] = draw(st.floats(0, 1, exclude_max=True))
        return Case(name, kwargs, True, kwargs)
    how = draw(st.sampled_from(["non-finite", "nested", "key", "type", "dropout", "classes"]))
    if how == "non-finite":
        kwargs[draw(st.text(min_size=1, max_size=4))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf])
        )
    elif how == "nested":
        kwargs["inner"] = {"x": [1.0, math.nan]}
    elif how == "key":
        kwargs[draw(st.integers())] = 1  # type: ignore[index]
    elif how == "type":
        return Case(
            name,
            draw(st.one_of(st.text(max_size=4), st.integers(), st.lists(st.integers()))),
            False,
        )
    elif how == "dropout":
        name = "supernet_kwargs"
        kwargs = {"dropout": draw(st.one_of(st.floats(min_value=1), st.floats(max_value=-1e-9),
                                            st.just(math.nan), st.text(max_size=3)))}  # fmt: skip
    else:
        name = "supernet_kwargs"
        kwargs = {"num_classes": draw(st.one_of(st.integers(max_value=0), st.just(2.5),
                                                st.booleans(), st.text(max_size=3)))}  # fmt: skip
    return Case(name, kwargs, False)


def _settings_of(case: Case) -> dict[str, Any]:
    return dict(case.value) if case.name in ("mean", "std") else {case.name: case.value}


def _checker(case: Case) -> Callable[[TrainConfig], None]:
    def check(config: TrainConfig) -> None:
        if case.name in ("mean", "std"):
            got: Any = (config.mean, config.std)
        else:
            got = getattr(config, case.name)
        assert got == case.expected and type(got) is type(case.expected), (
            f"{case}: parsed as {got!r}, expected {case.expected!r}"
        )

    return check


def _judge(case: Case) -> None:
    expect_clean(
        "settings", case, lambda: TrainConfig.from_dict(_settings_of(case)),
        expect="ok" if case.good else "error", mentions=[] if case.good else [case.name],
        check=_checker(case) if case.good else None,
    )  # fmt: skip


@fuzz_settings(150)
@given(float_cases())
def test_float_settings(case: Case) -> None:
    _judge(case)


@fuzz_settings(120)
@given(int_cases())
def test_int_settings(case: Case) -> None:
    _judge(case)


@fuzz_settings(60)
@given(bool_cases())
def test_bool_settings(case: Case) -> None:
    _judge(case)


@fuzz_settings(100)
@given(text_cases())
def test_name_and_text_settings(case: Case) -> None:
    _judge(case)


@fuzz_settings(100)
@given(table_cases())
def test_list_and_table_settings(case: Case) -> None:
    _judge(case)


@fuzz_settings(40)
@given(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS), st.integers())
def test_unknown_settings_list_the_known_ones(key: str, value: int) -> None:
    def call() -> TrainConfig:
        return TrainConfig.from_dict({"epochs": 2, key: value})

    expect_clean("settings", {key: value}, call, mentions=[repr(key), "known"])


# -- the command line -----------------------------------------------------------------------
class _FakeTrainer:
    """Records the settings the command line would train with; trains nothing."""

    configs: ClassVar[list[TrainConfig]] = []

    def __init__(self, config: TrainConfig) -> None:
        _FakeTrainer.configs.append(config)
        from types import SimpleNamespace

        self.dist = SimpleNamespace(is_main=False)

    def fit(self, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def fake_trainer() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("onefit.cli.Trainer", _FakeTrainer)
        yield _FakeTrainer.configs


def _text_of(case: Case) -> str | None:
    """The case as ``--set`` text, or None when it has no text form that means the same."""
    value = case.value
    if case.name in ("mean", "std") or case.name in TEXTS or case.name == "init_weights":
        return None  # a text setting reads any text as text: covered by the file cases
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    return json.dumps(value)


def _json_means_otherwise(text: str) -> bool:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return value is None or isinstance(value, (str, list, dict))


def _cli_case(case: Case, fake: list[TrainConfig], args: list[str]) -> None:
    fake.clear()
    expect = "ok" if case.good else "error"
    verdict = expect_clean_cli(
        "settings-cli", args, expect=expect, mentions=[] if case.good else [case.name]
    )
    if case.good and verdict.passed and verdict.outcome == "ok":
        _checker(case)(fake[-1])


@fuzz_settings(80)
@given(st.one_of(float_cases(), int_cases(), bool_cases(), text_cases()))
def test_set_on_the_command_line(fake_trainer: list[TrainConfig], case: Case) -> None:
    text = _text_of(case)
    if text is None or "\x00" in text or (case.name in CHOICES and not isinstance(case.value, str)):
        return  # a non-text value for a name setting spells a (bad) name: covered above
    if isinstance(case.value, str) and _json_means_otherwise(text):
        return  # '"1"' or 'null' on the command line is JSON: another value than the text
    _cli_case(case, fake_trainer, ["train", "--set", f"{case.name}={text}"])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(value)


def _writable(value: Any, kind: str) -> bool:
    """Whether the file format can hold ``value`` as it is (TOML has no null)."""
    if value is None:
        return kind != "toml"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return kind == "json" and abs(value) < 10**300
    if isinstance(value, str):
        return all(c.isprintable() for c in value) and (kind != "yaml" or "\\" not in value)
    if isinstance(value, (list, tuple)):
        return all(_writable(v, kind) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _writable(k, kind) and _writable(v, kind)
                   for k, v in value.items())  # fmt: skip
    return isinstance(value, (bool, int, float))


def _write(settings: dict[str, Any], kind: str, folder: Path) -> Path:
    path = folder / f"settings.{kind}"
    if kind == "toml":
        text = "[train]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items())
    elif kind == "json":
        text = json.dumps({"train": settings})
    else:
        import yaml

        text = yaml.safe_dump({"train": settings}, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


@fuzz_settings(60)
@given(
    st.one_of(float_cases(), int_cases(), bool_cases(), text_cases(), table_cases()),
    st.sampled_from(["toml", "json", "yaml"]),
)
def test_config_files(fake_trainer: list[TrainConfig], case: Case, kind: str) -> None:
    settings = _settings_of(case)
    if not _writable(settings, kind):
        return
    with tempfile.TemporaryDirectory() as folder:
        path = _write(settings, kind, Path(folder))
        _cli_case(case, fake_trainer, ["train", "--config", str(path)])


BROKEN = {
    "toml": ["epochs = ", "[train\nepochs = 2", "epochs = 2\nepochs = 3", "x = 'unterminated"],
    "json": ["{", '{"train": {"epochs": 2,}}', "[1, 2", '{"epochs": tru}'],
    "yaml": ["train: [1, 2", "train:\n  epochs: 2\n   lr: 1", "a: b: c", "- [\n"],
}
NOT_A_TABLE = {
    "toml": [],
    "json": ["[1, 2]", "3", '"text"', "null"],
    "yaml": ["- 1\n- 2", "3", "", "text"],
}


@fuzz_settings(60)
@given(
    st.sampled_from(["toml", "json", "yaml"]),
    st.sampled_from(["broken", "not-a-table", "non-utf8", "truncated", "train-not-a-table"]),
    st.data(),
)
def test_damaged_config_files(
    fake_trainer: list[TrainConfig], kind: str, damage: str, data: st.DataObject
) -> None:
    good = {"epochs": 2, "weight_decay": "1e-4", "amp": "no", "eval_configs": ["largest"]}
    with tempfile.TemporaryDirectory() as folder:
        path = _write(good, kind, Path(folder))
        expect = "error"
        raw = path.read_bytes()
        if damage == "broken":
            raw = data.draw(st.sampled_from(BROKEN[kind])).encode()
        elif damage == "not-a-table" and NOT_A_TABLE[kind]:
            raw = data.draw(st.sampled_from(NOT_A_TABLE[kind])).encode()
        elif damage == "non-utf8":
            at = data.draw(st.integers(0, len(raw)))
            bad = data.draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3\x28", b"\x80", b"\xe2\x82"]))
            raw = raw[:at] + bad + raw[at:]
        elif damage == "train-not-a-table":
            raw = {"toml": b"train = 3\n", "json": b'{"train": [1]}', "yaml": b"train: 3\n"}[kind]
        else:
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
            expect = "either"  # a cut file may still be a valid (shorter) one
        path.write_bytes(raw)
        expect_clean_cli(
            "settings-cli", ["train", "--config", str(path)], expect=expect,
            mentions=[path.name] if expect == "error" else [],
        )  # fmt: skip
