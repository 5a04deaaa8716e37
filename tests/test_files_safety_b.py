"""Malicious or foreign files where onefit expects its own: refused, and nothing runs.

A pickle whose ``__reduce__`` would create a marker file is put where a predictor, a
CIFAR batch and a latency table are expected; results databases carrying a trigger or a
view, and one copied from another run (or searched on other weights), are refused.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
import sqlite3

import numpy as np
import pytest

import onefit
from onefit.data.base import DataError
from onefit.data.cifar import Cifar
from onefit.deploy.picks import load_search
from onefit.deploy.report import write_report
from onefit.predictors import Predictor
from onefit.predictors.predictor import PredictorError
from onefit.profiling.lut import LatencyTable, LatencyTableError
from onefit.rundir import RunDir
from onefit.search.store import ResultStore, SearchOrigin, StoreError


class Touch:
    """Unpickling this creates ``path`` (what a malicious file would do, harmlessly)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (self.path,))


PROTOCOLS = (0, 2, pickle.HIGHEST_PROTOCOL)


def malicious(marker: pathlib.Path, protocol: int, wrapped: bool) -> bytes:
    """A pickle that would touch ``marker``; ``wrapped``: inside a CIFAR-like dict."""
    payload = {"data": Touch(marker), "labels": [0]} if wrapped else Touch(marker)
    return pickle.dumps(payload, protocol=protocol)


def test_the_malicious_pickle_does_run_when_unpickled_plainly(tmp_path):
    """The test's pickle is really malicious (so the refusals below mean something)."""
    marker = tmp_path / "marker"
    pickle.loads(malicious(marker, 2, wrapped=False))
    assert marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("wrapped", [False, True])
def test_a_malicious_pickle_as_predictor_cifar_batch_or_latency_table_is_refused(
    tmp_path, protocol, wrapped
):
    marker = tmp_path / "marker"
    data = malicious(marker, protocol, wrapped)
    predictor = tmp_path / "predictor.json"
    predictor.write_bytes(data)
    with pytest.raises(PredictorError, match=r"predictor\.json"):
        Predictor.load(predictor)
    table = tmp_path / "latency_table.json"
    table.write_bytes(data)
    with pytest.raises(LatencyTableError, match=r"latency_table\.json"):
        LatencyTable.load(table)
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(data)
    with pytest.raises(DataError, match="data_batch_1"):
        Cifar().load(folder, image_size=None, in_channels=None)
    (folder / "data_batch_1").unlink()
    (folder / "test_batch").write_bytes(
        pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    )
    (folder / "batches.meta").write_bytes(data)  # the meta file is a pickle too
    with pytest.raises(DataError, match=r"batches\.meta"):
        Cifar().load(folder, image_size=None, in_channels=None)
    assert not marker.exists()


# -- results databases ----------------------------------------------------------------------


def fake_run(root: pathlib.Path, weights: bytes = b"weights") -> RunDir:
    """A run directory with a checkpoint file and an identity (no training needed:
    load_search hashes the checkpoint but does not load it)."""
    run = RunDir(root)
    run.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    run.checkpoint.write_bytes(weights)
    run.config_file.write_text(json.dumps({"supernet": "mobilenetv3", "epochs": 1}))
    run.run_id()
    return run


SPACE = {"a": [1, 2, 3]}


def search(run: RunDir, budget: int = 2) -> object:
    return onefit.run_search(
        onefit.SearchSpace(SPACE), lambda c: {"accuracy": c["a"] / 10, "macs": float(c["a"])},
        {"accuracy": "max", "macs": "min"}, budget=budget, progress=False, strategy="grid",
        store=run.default_search_dir / "results.db", origin=SearchOrigin.of_run(run.root),
    )  # fmt: skip


def searched(run: RunDir) -> pathlib.Path:
    """Record a small search of ``run`` in its default store, as search_run would."""
    run.add_search("search")
    search(run)
    return run.default_search_dir / "results.db"


def test_a_search_is_read_back_from_its_own_run(tmp_path):
    run = fake_run(tmp_path / "a")
    searched(run)
    record = load_search(run.root)
    assert sorted(e.metrics["accuracy"] for e in record.history) == [0.1, 0.2]
    assert len(record.pareto) == 2
    search(run, budget=3)  # resumed on the same run and weights: continues
    assert len(load_search(run.root).history) == 3


def test_a_database_copied_from_another_run_is_refused_naming_both_runs(tmp_path):
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b")
    store = searched(a)
    b.add_search("search")
    shutil.copy(store, b.default_search_dir / "results.db")
    with pytest.raises(StoreError) as caught:
        load_search(b.root)
    message = str(caught.value)
    assert a.run_id() in message and b.run_id() in message and "results.db" in message
    # The report shows the refusal; it does not say "No search results yet".
    page = write_report(b.root).read_text()
    assert "No search results yet" not in page and a.run_id() in page


def test_a_search_of_other_weights_is_refused(tmp_path):
    run = fake_run(tmp_path / "a")
    searched(run)
    run.checkpoint.write_bytes(b"weights trained further")
    with pytest.raises(StoreError, match="other weights"):
        load_search(run.root)
    # Resuming that search on the new weights is refused too.
    with pytest.raises(StoreError, match="other weights"):
        search(run, budget=3)


def test_a_database_without_a_recorded_origin_is_refused(tmp_path):
    run = fake_run(tmp_path / "a")
    path = run.add_search("search") / "results.db"
    with ResultStore(path) as store:
        store.record(store.open_run("search", {}), {"a": 1}, {"accuracy": 0.5})
    with pytest.raises(StoreError, match="records no run"):
        load_search(run.root)


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("CREATE TRIGGER evil AFTER INSERT ON configs BEGIN DELETE FROM runs; END", "evil"),
        ("CREATE VIEW best AS SELECT * FROM configs", "best"),
        ("CREATE TABLE extra (x)", "extra"),
        ("CREATE INDEX by_json ON configs (json)", "by_json"),
        ("ALTER TABLE runs ADD COLUMN note TEXT", "runs"),
    ],
)
def test_a_database_with_sql_objects_onefit_did_not_create_is_refused(tmp_path, sql, named):
    run = fake_run(tmp_path / "a")
    path = searched(run)
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=named):
        ResultStore(path)
    with pytest.raises(StoreError, match=r"results\.db"):
        load_search(run.root)
    page = write_report(run.root).read_text()
    assert "No search results yet" not in page and named in page


@pytest.mark.parametrize(
    "content",
    [b"", b"not a database at all", b"SQLite format 3\x00" + b"\x00" * 50, None],
)
def test_a_damaged_or_foreign_database_is_never_no_results(tmp_path, content):
    run = fake_run(tmp_path / "a")
    path = searched(run)
    if content is None:  # truncated to half
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(StoreError, match=r"results\.db"):
        load_search(run.root)
    page = write_report(run.root).read_text()
    assert "No search results yet" not in page and "Search results not shown" in page


def test_another_applications_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (x)")
    db.execute("PRAGMA application_id=1234")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="application id"):
        ResultStore(path)


# -- latency tables and predictors: versions, structure, profile, space ----------------------


def small_table() -> LatencyTable:
    from onefit.metrics.device import DeviceProfile

    profile = DeviceProfile.detect(runtime="eager", threads=1, name="here")
    entries = {"stem": {"median_ms": 0.5, "iqr_ms": 0.01}, "head": {"median_ms": 0.2, "iqr_ms": 0}}
    return LatencyTable(None, profile, entries, {"call_overhead_ms": 0.1})


def test_a_format_1_latency_table_is_read_and_saved_as_format_2(tmp_path):
    table = small_table()
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**table.to_dict(), "format": "onefit-latency-table/1"}))
    loaded = LatencyTable.load(old)
    assert loaded.entries == table.entries
    loaded.save(tmp_path / "new.json")
    saved = json.loads((tmp_path / "new.json").read_text())
    assert saved["format"] == "onefit-latency-table/2" and len(saved["sha256"]) == 64
    assert LatencyTable.load(tmp_path / "new.json").entries == table.entries


@pytest.mark.parametrize("median", [-1.0, 0.0, "1", None, True])
def test_a_bad_median_is_refused_naming_the_entry(tmp_path, median):
    from onefit.digest import seal

    document = small_table().to_dict()
    document["entries"]["stem"]["median_ms"] = median
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(seal(document)))
    with pytest.raises(LatencyTableError, match=r"lut\.json: entry 'stem' has median_ms"):
        LatencyTable.load(path)


def test_an_edited_latency_table_is_refused(tmp_path):
    path = tmp_path / "lut.json"
    small_table().save(path)
    path.write_text(path.read_text().replace("0.5", "0.4"))
    with pytest.raises(LatencyTableError, match="does not match its sha256"):
        LatencyTable.load(path)


def test_a_latency_table_of_another_device_profile_is_refused_naming_both(tmp_path):
    from onefit.metrics.device import DeviceProfile, ProfileMismatchError

    path = tmp_path / "lut.json"
    small_table().save(path)
    target = DeviceProfile.detect(runtime="eager", threads=2, name="target")
    with pytest.raises(ProfileMismatchError, match=r"'here'.*'target'.*threads"):
        LatencyTable.load(path, profile=target)
    same = DeviceProfile.detect(runtime="eager", threads=1, name="other name")
    assert LatencyTable.load(path, profile=same).entries == small_table().entries


def test_a_predictor_for_another_space_is_refused_naming_the_difference(tmp_path):
    from onefit.predictors import fit_predictor

    space = onefit.SearchSpace({"a": [1, 2, 3], "b": [1, 2]})
    configs = [space.sample(seed=i) for i in range(12)]
    path = tmp_path / "p.json"
    fit_predictor(space, configs, [c["a"] + c["b"] for c in configs], method="ridge").save(path)
    assert Predictor.load(path, space=space).predict([space.largest()]).shape == (1,)
    other = onefit.SearchSpace({"a": [1, 2, 3, 4], "b": [1, 2]})
    with pytest.raises(PredictorError, match=r"another search space.*'a' has choices"):
        Predictor.load(path, space=other)
    # A space edited inside the file (so its model no longer fits) is refused too.
    data = json.loads(path.read_text())
    data["space"]["a"] = [1, 2, 3, 4, 5]
    path.write_text(json.dumps(data))
    with pytest.raises(PredictorError, match=r"p\.json"):
        Predictor.load(path)
