"""Fuzz: corrupted, truncated, bit-flipped and foreign results stores, latency tables,
predictors and dataset files each give a clean onefit error naming the file (or the
entry, the column), or are read correctly; never another exception.

Byte-level damage to a file onefit hashes (latency tables, predictors) must be an error.
A results store is SQLite, which keeps no checksum of its pages: a flipped bit inside a
stored value can go unnoticed, so there a damaged store may be read ("either"), but it
must never raise anything but a clean error. The same holds for a CIFAR pickle (its
pixel bytes carry no checksum).
"""

from __future__ import annotations

import gzip
import json
import pickle
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import onefit
from onefit.data.cifar import Cifar
from onefit.data.idx import read_idx
from onefit.digest import seal
from onefit.metrics.device import DeviceProfile
from onefit.predictors import Predictor, fit_predictor
from onefit.profiling.lut import LatencyTable
from onefit.search.store import ResultStore, SearchOrigin
from tests.fuzz.harness import expect_clean, fuzz_settings


def read_store(path: Path) -> int:
    """Everything a reader of the store reads; the number of evaluations."""
    count = 0
    with ResultStore(path, create=False) as store:
        for name in store.runs():
            run = store.run_id(name)
            store.settings(run)
            store.origin(name)
            count += len(store.history(run))
    return count


def damage(data: bytes, positions: list[int], bits: list[int]) -> bytes:
    """``data`` with one bit flipped at each position (each byte at most once)."""
    out = bytearray(data)
    done = set()
    for position, bit in zip(positions, bits):
        if position % len(out) not in done:
            done.add(position % len(out))
            out[position % len(out)] ^= 1 << bit
    return bytes(out)


flips = st.lists(st.integers(0, 1 << 30), min_size=1, max_size=3)
bits = st.lists(st.integers(0, 7), min_size=3, max_size=3)


# -- results stores ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("store") / "results.db"
    onefit.run_search(
        onefit.SearchSpace({"a": list(range(8)), "b": ["x", "y"]}),
        lambda c: {"accuracy": c["a"] / 10, "latency": 1.0 + c["a"]},
        {"accuracy": "max", "latency": "min"}, budget=12, strategy="random", progress=False,
        store=path, origin=SearchOrigin("run-a", "0" * 64),
    )  # fmt: skip
    return path.read_bytes()


@fuzz_settings(60)
@given(positions=flips, bits=bits)
def test_bit_flipped_stores(tmp_path_factory, store_bytes, positions, bits):
    path = tmp_path_factory.mktemp("flip") / "flipped.db"
    path.write_bytes(damage(store_bytes, positions, bits))
    expect_clean("stores", ("flip", positions, bits), lambda: read_store(path),
                 expect="either", mentions=["flipped.db"])  # fmt: skip


@fuzz_settings(40)
@given(cut=st.floats(0.0, 0.999))
def test_truncated_stores(tmp_path_factory, store_bytes, cut):
    path = tmp_path_factory.mktemp("cut") / "truncated.db"
    path.write_bytes(store_bytes[: int(len(store_bytes) * cut)])
    expect_clean("stores", ("truncate", cut), lambda: read_store(path), mentions=["truncated.db"])


@fuzz_settings(30)
@given(
    data=st.binary(max_size=600),
    sql=st.sampled_from(
        [
            "CREATE TRIGGER t AFTER INSERT ON runs BEGIN SELECT 1; END",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TABLE evil (x)",
            "ALTER TABLE configs ADD COLUMN extra TEXT",
            "PRAGMA application_id=7",
            "PRAGMA user_version=99",
            "DROP TABLE failures",
            None,
        ]
    ),
)
def test_foreign_stores(tmp_path_factory, store_bytes, data, sql):
    folder = tmp_path_factory.mktemp("foreign")
    path = folder / "foreign.db"
    if sql is None:  # arbitrary bytes, or an SQLite header followed by them
        path.write_bytes((b"SQLite format 3\x00" if len(data) % 2 else b"") + data)
    else:  # a onefit store with SQL added
        path.write_bytes(store_bytes)
        db = sqlite3.connect(path)
        db.execute(sql)
        db.commit()
        db.close()
    expect_clean("stores", ("foreign", data[:40], sql), lambda: read_store(path),
                 mentions=["foreign.db"])  # fmt: skip


# -- latency tables ----------------------------------------------------------------------------

PROFILE = DeviceProfile.detect(runtime="eager", device="cpu", threads=1, batch_size=1)


def table_document() -> dict:
    entries = {f"unit{i}": {"median_ms": 0.5 + i, "iqr_ms": 0.01} for i in range(4)}
    return LatencyTable(None, PROFILE, entries, {"call_overhead_ms": 0.0}).to_dict()


odd_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6),
    st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
)  # fmt: skip


@fuzz_settings(60)
@given(unit=st.integers(0, 3), field=st.sampled_from(["median_ms", "iqr_ms"]), value=odd_numbers)
def test_latency_table_entries(tmp_path_factory, unit, field, value):
    document = table_document()
    document["entries"][f"unit{unit}"][field] = value
    path = tmp_path_factory.mktemp("lut") / "table.json"
    good = (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        and np.isfinite(value) and (value > 0 if field == "median_ms" else value >= 0)
    )  # fmt: skip
    try:
        path.write_text(json.dumps(seal(document)))
        mentions = [f"unit{unit}", field]  # sealed, so the entry's check must name it
    except ValueError:  # NaN/inf cannot be sealed: written as a careless tool might
        path.write_text(json.dumps({**document, "sha256": "0" * 64}))
        mentions = ["table.json"]

    def check(table: LatencyTable) -> None:
        assert table.entries[f"unit{unit}"][field] == float(value)

    expect_clean("luts", (field, value), lambda: LatencyTable.load(path),
                 expect="ok" if good else "error", check=check, mentions=mentions)  # fmt: skip


@fuzz_settings(60)
@given(positions=flips, bits=bits, cut=st.none() | st.floats(0.0, 0.999))
def test_damaged_latency_table_files(tmp_path_factory, positions, bits, cut):
    path = tmp_path_factory.mktemp("lut") / "damaged.json"
    LatencyTable(None, PROFILE, table_document()["entries"], {}).save(path)
    original = path.read_bytes()
    data = (
        damage(original, positions, bits) if cut is None else original[: int(len(original) * cut)]
    )
    path.write_bytes(data)
    # Cutting only the trailing newline leaves the same document: it must still load.
    same = data.strip() == original.strip()
    expect_clean("luts", (positions, bits, cut), lambda: LatencyTable.load(path),
                 expect="ok" if same else "error", mentions=["damaged.json"])  # fmt: skip


@fuzz_settings(30)
@given(
    field=st.sampled_from(
        ["runtime", "device", "device_name", "threads", "batch_size", "platform"]
    ),
    value=st.one_of(st.text(min_size=1, max_size=8), st.integers(1, 64)),
)
def test_latency_table_of_another_device_profile(tmp_path_factory, field, value):
    path = tmp_path_factory.mktemp("lut") / "profiled.json"
    # Built directly (from_dict would refuse a mistyped field): the table file carries it.
    measured = DeviceProfile(**{**PROFILE.to_dict(), field: value, "name": "elsewhere"})
    entries = table_document()["entries"]
    LatencyTable(None, measured, entries, {}).save(path)
    same = measured.differences(PROFILE) == {}
    kind_ok = isinstance(value, int) == (field in ("threads", "batch_size"))
    expect = "ok" if same and kind_ok else "error"
    mentions = ["elsewhere", PROFILE.name] if kind_ok else [field]
    expect_clean("luts", (field, value), lambda: LatencyTable.load(path, profile=PROFILE),
                 expect=expect, mentions=mentions)  # fmt: skip


# -- predictors --------------------------------------------------------------------------------

SPACE = {"a": [1, 2, 3], "b": [1, 2, 3], "c": ["x", "y"]}


@pytest.fixture(scope="module")
def predictor_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    space = onefit.SearchSpace(SPACE)
    configs = [space.sample(seed=i) for i in range(30)]
    values = [c["a"] * 2 + c["b"] + (c["c"] == "y") for c in configs]
    path = tmp_path_factory.mktemp("pred") / "p.json"
    fit_predictor(space, configs, values, method="ridge", folds=3).save(path)
    return path.read_bytes()


@fuzz_settings(40)
@given(positions=flips, bits=bits, cut=st.none() | st.floats(0.0, 0.999))
def test_damaged_predictor_files(tmp_path_factory, predictor_bytes, positions, bits, cut):
    path = tmp_path_factory.mktemp("pred") / "predictor.json"
    data = predictor_bytes
    data = damage(data, positions, bits) if cut is None else data[: int(len(data) * cut)]
    path.write_bytes(data)
    expect_clean("predictors", (positions, bits, cut), lambda: Predictor.load(path),
                 mentions=["predictor.json"])  # fmt: skip


@fuzz_settings(40)
@given(
    change=st.sampled_from(["same", "choices", "add", "drop", "rename"]),
    dim=st.sampled_from(sorted(SPACE)),
    extra=st.integers(4, 9),
)
def test_predictor_for_another_space(tmp_path_factory, predictor_bytes, change, dim, extra):
    path = tmp_path_factory.mktemp("pred") / "predictor.json"
    path.write_bytes(predictor_bytes)
    other = {k: list(v) for k, v in SPACE.items()}
    if change == "choices":
        other[dim] = [*other[dim], extra if dim != "c" else f"z{extra}"]
    elif change == "add":
        other[f"new{extra}"] = [1, 2]
    elif change == "drop":
        del other[dim]
    elif change == "rename":
        other[f"{dim}{extra}"] = other.pop(dim)
    space = onefit.SearchSpace(other)

    def check(predictor: Predictor) -> None:
        assert predictor.predict([space.smallest()]).shape == (1,)

    expect_clean("predictors", (change, dim, extra), lambda: Predictor.load(path, space=space),
                 expect="ok" if change == "same" else "error", check=check,
                 mentions=["predictor.json", "space"])  # fmt: skip


# -- datasets ----------------------------------------------------------------------------------


def cifar_batch(rows: int = 4) -> dict:
    return {"data": np.zeros((rows, 3072), np.uint8), "labels": list(range(rows))}


@fuzz_settings(40)
@given(
    mutation=st.sampled_from(
        [
            "drop-data",
            "drop-labels",
            "shape",
            "dtype",
            "labels-range",
            "labels-count",
            "labels-type",
            "not-dict",
            "ok",
        ]
    ),
    number=st.integers(-5, 200),
    protocol=st.sampled_from([2, pickle.HIGHEST_PROTOCOL]),
)
def test_cifar_batches(tmp_path_factory, mutation, number, protocol):
    folder = tmp_path_factory.mktemp("cifar")
    batch: object = cifar_batch()
    assert isinstance(batch, dict)
    good = mutation == "ok"
    if mutation == "drop-data":
        del batch["data"]
    elif mutation == "drop-labels":
        del batch["labels"]
    elif mutation == "shape":
        batch["data"] = np.zeros((4, abs(number) % 3071 + 1), np.uint8)
    elif mutation == "dtype":
        batch["data"] = np.zeros((4, 3072), np.float32)
    elif mutation == "labels-range":
        batch["labels"] = [0, 1, 2, number]
        good = 0 <= number < 10
    elif mutation == "labels-count":
        batch["labels"] = list(range(abs(number) % 4))
    elif mutation == "labels-type":
        batch["labels"] = ["a", "b", "c", "d"]
    elif mutation == "not-dict":
        batch = [batch]
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))

    def check(raw: object) -> None:
        assert tuple(raw.images.shape) == (4, 3, 32, 32)  # type: ignore[attr-defined]

    expect_clean("datasets", (mutation, number),
                 lambda: Cifar().load(folder, image_size=None, in_channels=None),
                 expect="ok" if good else "error", check=check,
                 mentions=["data_batch_1"])  # fmt: skip


@fuzz_settings(30)
@given(positions=flips, bits=bits, cut=st.none() | st.floats(0.0, 0.999))
def test_damaged_cifar_batches(tmp_path_factory, positions, bits, cut):
    folder = tmp_path_factory.mktemp("cifar")
    data = pickle.dumps(cifar_batch(), protocol=2)
    data = damage(data, positions, bits) if cut is None else data[: int(len(data) * cut)]
    (folder / "data_batch_1").write_bytes(data)
    expect_clean("datasets", (positions, bits, cut),
                 lambda: Cifar().load(folder, image_size=None, in_channels=None),
                 expect="either" if cut is None else "error",
                 mentions=["data_batch_1"])  # fmt: skip


def idx_bytes(ndim: int, shape: tuple[int, ...], magic: int | None = None) -> bytes:
    header = struct.pack(">I", magic if magic is not None else (0x08 << 8) | ndim)
    header += b"".join(struct.pack(">I", n) for n in shape)
    return header + bytes(int(np.prod(shape)))


def idx_layout(data: bytes, ndim: int) -> tuple[int, ...] | None:
    """The shape a well-formed unsigned-byte IDX file of ``ndim`` dimensions declares, or
    None when ``data`` is not one (other magic, header or content of another size). Other
    declared sizes whose product matches the content make a valid file of that shape."""
    head = 4 + 4 * ndim
    if len(data) < head or struct.unpack(">I", data[:4])[0] != (0x08 << 8) | ndim:
        return None
    dims = struct.unpack(f">{ndim}I", data[4:head])
    return dims if len(data) == head + int(np.prod(dims, dtype=object)) else None


@fuzz_settings(40)
@given(
    ndim=st.sampled_from([1, 3]),
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    declared=st.lists(st.integers(0, 1 << 32 - 1), min_size=0, max_size=4),
    magic=st.none() | st.integers(0, 1 << 32 - 1),
    cut=st.none() | st.integers(0, 40),
    compressed=st.booleans(),
)
def test_idx_files(tmp_path_factory, ndim, shape, declared, magic, cut, compressed):
    path = tmp_path_factory.mktemp("idx") / "train-images-idx3-ubyte"
    real = tuple((shape * 3)[:ndim])
    data = idx_bytes(ndim, real, magic)
    if declared:  # the header declares other sizes than the content has
        data = data[:4] + b"".join(struct.pack(">I", n) for n in declared) + data[4 + 4 * ndim :]
    if cut is not None:
        data = data[: max(0, len(data) - cut)]
    dims = idx_layout(data, ndim)
    good = dims is not None
    path.write_bytes(gzip.compress(data) if compressed else data)

    def check(array: np.ndarray) -> None:
        assert array.shape == dims

    expect_clean("datasets", (ndim, shape, declared, magic, cut),
                 lambda: read_idx(path, ndim), expect="ok" if good else "error",
                 check=check, mentions=["train-images-idx3-ubyte"])  # fmt: skip


@fuzz_settings(15)
@given(
    label=st.sampled_from(["text", "float", "none", "int", "classlabel", "missing"]),
    image=st.sampled_from(["image", "int", "text", "array", "missing"]),
)
def test_hugging_face_columns(label, image):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from onefit.data.huggingface import from_huggingface

    rows = 6
    columns: dict = {}
    features: dict = {}
    if image == "image":
        columns["img"] = [Image.new("RGB", (8, 8), (i * 30, 0, 0)) for i in range(rows)]
        features["img"] = datasets.Image()
    elif image == "int":
        columns["img"], features["img"] = list(range(rows)), datasets.Value("int64")
    elif image == "text":
        columns["img"], features["img"] = ["x"] * rows, datasets.Value("string")
    elif image == "array":
        columns["img"] = [np.zeros((8, 8), np.uint8).tolist()] * rows
        features["img"] = datasets.Array2D((8, 8), "uint8")
    labels = [i % 2 for i in range(rows)]
    if label == "text":
        columns["y"], features["y"] = ["a", "b"] * 3, datasets.Value("string")
    elif label == "float":
        columns["y"], features["y"] = [0.5] * rows, datasets.Value("float32")
    elif label == "none":
        columns["y"], features["y"] = [None, *labels[1:]], datasets.Value("int64")
    elif label == "int":
        columns["y"], features["y"] = labels, datasets.Value("int64")
    elif label == "classlabel":
        columns["y"], features["y"] = labels, datasets.ClassLabel(names=["a", "b"])
    columns["other"], features["other"] = list(range(rows)), datasets.Value("int32")
    table = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    good = label in ("int", "classlabel") and image in ("image", "array")
    named = "y" if label not in ("int", "classlabel") else "img"

    def load() -> object:
        return from_huggingface(
            table,
            image_column="img" if image != "missing" else "picture",
            label_column="y" if label != "missing" else "label_id",
            val_fraction=0.34,
        )

    missing = "picture" if image == "missing" else "label_id" if label == "missing" else None
    mentions = [missing, "other"] if missing else [named, "other"]

    def check(splits: object) -> None:
        assert len(splits.train) + len(splits.val) == rows  # type: ignore[attr-defined]

    expect_clean("datasets", (label, image), load, expect="ok" if good else "error",
                 check=check, mentions=mentions)  # fmt: skip
