"""Fuzz: damaged, truncated, foreign and malicious versions of the files a run writes.

Categories: ``checkpoints`` (bytes flipped, cut, inserted or appended; foreign entries
with a valid hash; a supernet built with other arguments), ``exports`` (model cards and
model files damaged), ``report-files`` (``metrics.jsonl``, ``config.json`` and
``run.json`` of any shape, with HTML in their strings). Every input ends in a
:class:`~onefit.errors.UserError` naming the file (or is accepted and checked).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from onefit.deploy.card import CARD_FILE, ModelCard, read_export
from onefit.deploy.report import read_metrics, write_report
from onefit.supernets import create_supernet
from onefit.training import load_checkpoint, load_supernet
from onefit.training.checkpoint import save_checkpoint
from tests.fuzz.harness import expect_clean, fuzz_settings

SMALL = {"width_mult": 0.5, "depths": [1], "kernel_sizes": [3], "expand_ratios": [3]}
KWARGS = {"num_classes": 10, "in_channels": 1, "image_size": 8, **SMALL}
HTML = ["<script>alert(1)</script>", "<b>", "&amp;", '"><img src=x onerror=alert(1)>', "$x$"]

# -- values -------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(HTML),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@functools.cache
def _state() -> dict[str, Any]:
    net = create_supernet("mobilenetv3", **KWARGS)
    return {
        "supernet": {"name": "mobilenetv3", "kwargs": KWARGS, "space": net.space.to_dict()},
        "model": net.state_dict(),
        "step": 1,
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files_a")


@functools.cache
def _good_bytes(folder: Path) -> bytes:
    return save_checkpoint(_state(), folder / "good.pt").read_bytes()


# -- checkpoints --------------------------------------------------------------------------
damage = st.one_of(
    st.tuples(
        st.just("flip"),
        st.lists(
            st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
            min_size=1,
            max_size=4,
        ),
    ),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=100)),
    st.tuples(st.just("replace"), st.binary(max_size=300)),
)


def _damaged(good: bytes, how: tuple[Any, ...]) -> bytes:
    kind = how[0]
    if kind == "flip":
        data = bytearray(good)
        for where, mask in how[1]:
            data[int(where * len(data))] ^= mask
        return bytes(data) if bytes(data) != good else bytes(data[:-1])
    if kind == "cut":
        return good[: int(how[1] * len(good))]
    if kind == "insert":
        at = int(how[1] * len(good))
        return good[:at] + how[2] + good[at:]
    if kind == "append":
        return good + how[1]
    return how[1]


@fuzz_settings(60)
@given(how=damage)
def test_damaged_checkpoint_bytes_are_refused_naming_the_file(folder: Path, how) -> None:
    path = folder / "last.pt"
    path.write_bytes(_damaged(_good_bytes(folder), how))
    expect_clean("checkpoints", how, lambda: load_checkpoint(path), mentions=[str(path)])


ENTRIES = ["model", "supernet", "optimizer", "step", "history", "format", "version"]


@fuzz_settings(40)
@given(
    entries=st.dictionaries(
        st.sampled_from(ENTRIES),
        st.one_of(json_values, st.just({"w": torch.zeros(2)})),
        max_size=5,
    ),
    keep_model=st.booleans(),
)
def test_foreign_checkpoint_entries_are_refused_naming_the_file(
    folder: Path, entries, keep_model
) -> None:
    # A file with a valid hash (so the structure checks, not the hash, must refuse it).
    state = dict(entries)
    if keep_model:
        state["model"] = _state()["model"]
    path = folder / "foreign.pt"
    try:
        save_checkpoint(state, path)
    except Exception:  # torch.save cannot write some generated values: not a file case
        return
    good = keep_model and state.get("supernet") == _state()["supernet"]

    def load() -> Any:
        return load_supernet(path)

    def check(net: Any) -> None:
        # Accepted only with its model entry: the weights loaded are exactly those saved.
        loaded = net.state_dict()
        assert loaded.keys() == state["model"].keys(), "other parameters loaded"
        assert all(torch.equal(loaded[k], v) for k, v in state["model"].items()), "weights"

    expect_clean(
        "checkpoints", entries, load, expect="either" if good else "error",
        mentions=[str(path)], check=check,
    )  # fmt: skip


kwargs_changes = st.dictionaries(
    st.sampled_from([*KWARGS, "dropout"]),
    st.one_of(st.sampled_from([0.75, 1.0, [1, 2], [5], [4, 6], 3, 100, "x", None]), scalars),
    max_size=2,
)


@fuzz_settings(40)
@given(changes=kwargs_changes)
def test_a_checkpoint_for_other_supernet_arguments_names_both(folder: Path, changes) -> None:
    path = folder / "args.pt"
    if not path.exists():
        save_checkpoint(_state(), path)
    given_kwargs = KWARGS | changes

    def text(value: Any) -> str:  # by value: 1 and 1.0 build the same network, True not
        if isinstance(value, list):
            return "[" + ",".join(text(v) for v in value) + "]"
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(float(value))
        return json.dumps(value, default=repr)

    differ = sorted(k for k in changes if k not in KWARGS or text(changes[k]) != text(KWARGS[k]))
    same = not differ
    expect_clean(
        "checkpoints",
        changes,
        lambda: load_checkpoint(path, supernet="mobilenetv3", kwargs=given_kwargs),
        expect="ok" if same else "error",
        mentions=[str(path), *differ[:1], "checkpoint", "this supernet"],
    )


# -- exports ------------------------------------------------------------------------------
def _card_document() -> dict[str, Any]:
    from tests.test_model_card import example_card

    digest = hashlib.sha256(b"an onnx model").hexdigest()
    return example_card(files={"model": "model.onnx"}, sha256={"model": digest}).to_dict()


def _paths(document: Any) -> list[tuple[str, ...]]:
    """Every key path of a nested dict."""
    found: list[tuple[str, ...]] = []
    if isinstance(document, dict):
        for key, value in document.items():
            found.append((key,))
            found.extend((key, *rest) for rest in _paths(value))
    return found


def _set(document: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool) -> None:
    for key in path[:-1]:
        document = document[key]
    if delete:
        del document[path[-1]]
    else:
        document[path[-1]] = value


card_damage = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("set"), st.integers(0, 10**6), json_values),
    st.tuples(st.just("text"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
    st.tuples(st.just("model"), st.binary(max_size=20)),
)


@fuzz_settings(80)
@given(how=card_damage)
def test_damaged_model_cards_and_files_are_refused_naming_the_file(folder: Path, how) -> None:
    export = folder / "export"
    export.mkdir(exist_ok=True)
    (export / "model.onnx").write_bytes(b"an onnx model")
    document = _card_document()
    card = export / CARD_FILE
    kind, expect = how[0], "error"
    mentions = [str(card)]  # the card, or for a damaged model file that file
    if kind in ("delete", "set"):
        paths = _paths(document)
        path = paths[how[1] % len(paths)]
        _set(document, path, how[2] if kind == "set" else None, kind == "delete")
        # Inside the free-form objects (supernet arguments, config, recipe, versions)
        # a key may be absent; every other field of a card is required.
        free = any(k in ("supernet", "config", "training_recipe", "versions") for k in path[:-1])
        expect = "error" if kind == "delete" and not free else "either"
        card.write_text(json.dumps(document))
    elif kind == "text":
        text = json.dumps(document)
        card.write_text(text[: int(how[1] * len(text))])
    elif kind == "bytes":
        card.write_bytes(how[1])
    else:
        card.write_text(json.dumps(document))
        (export / "model.onnx").write_bytes(how[1])
        mentions = [str(export / "model.onnx")]
        if how[1] == b"an onnx model":
            expect = "ok"

    def check(result: ModelCard) -> None:
        assert result == ModelCard.from_dict(json.loads(card.read_text()))
        assert all(
            (isinstance(v, float) and math.isfinite(v)) or v is None
            for v in result.evaluation.figures().values()
        )

    expect_clean(
        "exports", how, lambda: read_export(export), expect=expect, mentions=mentions, check=check
    )


# -- report files -------------------------------------------------------------------------
rows = st.one_of(
    st.fixed_dictionaries(
        {"epoch": st.integers(0, 50), "train_loss": st.floats(0, 10)},
        optional={"val_largest_accuracy": st.floats(0, 1), "lr": json_values},
    ).map(json.dumps),
    st.dictionaries(
        st.sampled_from(["epoch", "train_loss", "val_a_accuracy", "x"]), json_values
    ).map(lambda row: json.dumps(row)),
    json_values.map(json.dumps),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(HTML),
)


@fuzz_settings(60)
@given(lines=st.lists(rows, max_size=8))
def test_metrics_rows_of_any_shape_are_kept_or_named(folder: Path, lines) -> None:
    path = folder / "metrics.jsonl"
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines)
    path.write_text(text, encoding="utf-8")

    def check(result: tuple[list[dict[str, Any]], list[str]]) -> None:
        kept, warnings = result
        lines_ = [line for line in text.splitlines() if line.strip()]
        assert len(kept) + len(warnings) == len(lines_), (kept, warnings)
        for row in kept:
            assert isinstance(row["epoch"], int) and not isinstance(row["epoch"], bool)
            assert math.isfinite(row["train_loss"]) and not isinstance(row["train_loss"], bool)
        for warning in warnings:
            assert warning.startswith(f"{path} line "), warning

    expect_clean("report-files", lines, lambda: read_metrics(path), expect="ok", check=check)


report_inputs = st.one_of(
    json_values.map(json.dumps).map(str.encode),
    st.dictionaries(
        st.sampled_from(["supernet", "strategy", "epochs", "dataset", "task", "x"]),
        st.one_of(st.sampled_from(HTML), json_values),
    ).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=40),
)


@fuzz_settings(60)
@given(config=report_inputs, run=st.one_of(st.none(), report_inputs))
def test_report_of_any_config_and_run_file_is_escaped_or_names_the_file(
    folder: Path, config, run
) -> None:
    root = folder / "run"
    root.mkdir(exist_ok=True)
    (root / "config.json").write_bytes(config)
    identity = root / "run.json"
    identity.unlink(missing_ok=True)
    if run is not None:
        identity.write_bytes(run)

    def check(page: Path) -> None:
        html = page.read_text()
        assert html.count("<script>") == 1, "unescaped <script> in the report"
        assert "<b>" not in html and "<img" not in html

    names = ["config.json"] if run is None else []  # either file may be the one at fault
    expect_clean(
        "report-files",
        (config, run),
        lambda: write_report(root),
        expect="either",
        mentions=names or [".json"],
        check=check,
    )
