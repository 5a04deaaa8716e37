"""The results store: one SQLite file per search, resumable, readable by anything.

Tables:

- ``runs``: one row per named run with its settings (JSON).
- ``configs``: every config ever evaluated, as canonical JSON (unique).
- ``evaluations``: one row per (run, config) in evaluation order, with its status
  (``ok`` or ``failed``), the seconds it took and its constraint violation as the
  search computed it (<= 0: feasible), so picks honour every constraint, callables too.
- ``measurements``: one row per metric of an evaluation: value, kind (``measured``,
  ``predicted`` or ``cheap``), the device profile (JSON) it was measured under, time.
- ``failures``: the reason an evaluation failed.
- ``metadata``: key/value text; ``origin:<run name>`` holds the :class:`SearchOrigin` of
  a search made from a training run (its run id and the sha256 of the checkpoint it
  evaluated), so results copied from another run, or searched on other weights, are
  refused when read back (:meth:`ResultStore.check_origin`).

The file is marked as a onefit store (``PRAGMA application_id``) with its schema version
(``PRAGMA user_version``). Opening one checks both, runs SQLite's ``quick_check`` and
compares every table, column and index with the schema above; a trigger, a view, or any
table or column onefit did not create is refused (a :class:`StoreError` naming the file
and the object), so a file that is not a onefit store, a truncated or damaged one, or one
with SQL added to it is never read as an empty or valid store.

An evaluation and its measurements are written in one transaction, so a search killed
at any moment (SIGKILL included) leaves every finished evaluation whole and none half
written. WAL mode lets readers (a notebook, ``sqlite3``) look while a search runs.

Example:
    >>> import tempfile, os
    >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "results.db"))
    >>> run = store.open_run("demo", {"budget": 3})
    >>> store.record(run, {"a": 1}, {"accuracy": 0.9})
    >>> store.record_failure(run, {"a": 2}, "evaluator raised ValueError: boom")
    >>> [(e.config["a"], e.status, e.metrics) for e in store.history(run)]
    [(1, 'ok', {'accuracy': 0.9}), (2, 'failed', {})]
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from onefit.digest import file_sha256
from onefit.errors import MissingDependencyError, UserError
from onefit.rundir import RunDir
from onefit.space import ArchConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, settings TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    id INTEGER PRIMARY KEY, json TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(id),
    config_id INTEGER NOT NULL REFERENCES configs(id), status TEXT NOT NULL,
    seconds REAL, created REAL NOT NULL, violation REAL, UNIQUE (run_id, config_id));
CREATE TABLE IF NOT EXISTS measurements (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations(id), metric TEXT NOT NULL,
    value REAL, kind TEXT NOT NULL, profile TEXT, created REAL NOT NULL,
    PRIMARY KEY (evaluation_id, metric));
CREATE TABLE IF NOT EXISTS failures (
    evaluation_id INTEGER PRIMARY KEY REFERENCES evaluations(id), reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metadata (
    key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# "onft": marks the SQLite file as a onefit results store (PRAGMA application_id).
APPLICATION_ID = 0x6F6E6674
# PRAGMA user_version of the schema above. 0 is a store written before stores were
# marked (no metadata table, maybe no violation column): upgraded in place when opened.
SCHEMA_VERSION = 2
SQLITE_HEADER = b"SQLite format 3\x00"
STATUSES = ("ok", "failed")


class StoreError(UserError):
    """The store file is not a onefit results store, is damaged, belongs to another run,
    or a run's settings changed."""


@dataclass(frozen=True)
class SearchOrigin:
    """Which training run, and which weights, a search evaluated.

    ``run_id`` is the run's identity (:meth:`onefit.rundir.RunDir.run_id`) and
    ``weights_sha256`` the sha256 of the checkpoint file the search loaded.

    Example:
        >>> a, b = SearchOrigin("run-a", "0" * 64), SearchOrigin("run-b", "0" * 64)
        >>> a.check(a, "results.db", "search")
        >>> a.check(b, "results.db", "search")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        onefit.search.store.StoreError: results.db: search 'search' was made from run run-a, ...
    """

    run_id: str
    weights_sha256: str

    @classmethod
    def of_run(cls, run_dir: str | os.PathLike[str]) -> SearchOrigin:
        """The origin a search of the run in ``run_dir`` has now (its checkpoint's hash)."""
        run = RunDir(run_dir)
        if not run.checkpoint.is_file():
            raise StoreError(
                f"{run.checkpoint} not found: a search's results belong to the weights it "
                "evaluated, and this run has no checkpoint to check them against"
            )
        return cls(run.run_id(), file_sha256(run.checkpoint))

    def to_json(self) -> str:
        return json.dumps({"run_id": self.run_id, "weights_sha256": self.weights_sha256})

    @classmethod
    def from_json(cls, text: str, where: str) -> SearchOrigin:
        try:
            data = json.loads(text)
            origin = cls(data["run_id"], data["weights_sha256"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise StoreError(f"{where}: damaged search origin ({error!r})") from None
        if not isinstance(origin.run_id, str) or not isinstance(origin.weights_sha256, str):
            raise StoreError(f"{where}: damaged search origin ({text[:100]!r})")
        return origin

    def check(self, expected: SearchOrigin, path: str | Path, name: str) -> None:
        """Raise :class:`StoreError` unless this (recorded) origin is ``expected``."""
        if self.run_id != expected.run_id:
            raise StoreError(
                f"{path}: search {name!r} was made from run {self.run_id}, not from this run "
                f"{expected.run_id}: its configs and figures belong to the other run (was the "
                "store copied?); search this run with onefit search"
            )
        if self.weights_sha256 != expected.weights_sha256:
            raise StoreError(
                f"{path}: search {name!r} evaluated other weights (checkpoint sha256 "
                f"{self.weights_sha256[:16]}... then, {expected.weights_sha256[:16]}... now): "
                "the run was trained further after the search; search again under another "
                "--run-name or --out"
            )


@functools.cache
def _reference() -> tuple[dict[str, list[tuple[Any, ...]]], frozenset[str]]:
    """Columns of every table and the names of the indexes, as SCHEMA creates them."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return _tables(db), frozenset(
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        )
    finally:
        db.close()


def _tables(db: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """table -> (name, type, notnull, default, pk, hidden) of each column, in order."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        name: [tuple(row[1:]) for row in db.execute(f'PRAGMA table_xinfo("{name}")')]
        for name in names
        if not name.startswith("sqlite_")
    }


@dataclass(frozen=True)
class Evaluation:
    """One evaluated config of a run, in order."""

    index: int
    config: ArchConfig
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    seconds: float | None = None
    # The search's constraint violation (<= 0 feasible); None if not recorded.
    violation: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


F = TypeVar("F", bound=Callable[..., Any])


def _sqlite_errors(method: F) -> F:
    """SQLite errors while reading or writing (a damaged page, text that is not UTF-8)
    become a :class:`StoreError` naming the file."""

    @functools.wraps(method)
    def wrapper(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, UnicodeDecodeError) as error:
            raise StoreError(f"{self.path}: damaged results store (SQLite: {error})") from None

    return wrapper  # type: ignore[return-value]


def _as_config(config: Mapping[str, Any]) -> ArchConfig:
    return config if isinstance(config, ArchConfig) else ArchConfig(config)


class ResultStore:
    """A SQLite results store (see the module docstring)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open (``create``: or create) the store in ``path``; ``":memory:"`` for none.

        Raises :class:`StoreError` naming the file for anything but a sound onefit store
        (see the module docstring); with ``create=False`` also for a missing or empty file.
        """
        self.path = Path(path)
        memory = str(path) == ":memory:"
        if not memory:
            self._check_file(create)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: cannot open the results store ({error})") from None
        try:
            self._open(create)
        except (sqlite3.Error, UnicodeDecodeError) as error:  # a damaged page, non-UTF-8 text
            self.db.close()
            raise StoreError(
                f"{self.path} is not a readable onefit results store (SQLite: {error})"
            ) from None
        except StoreError:
            self.db.close()
            raise

    def _check_file(self, create: bool) -> None:
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no such results store")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        if not self.path.is_file():
            raise StoreError(f"{self.path} is not a file, so not a onefit results store")
        try:
            with self.path.open("rb") as file:
                head = file.read(len(SQLITE_HEADER))
        except OSError as error:
            raise StoreError(f"{self.path}: cannot read the results store ({error})") from None
        if not head:
            if not create:
                raise StoreError(f"{self.path} is empty, not a onefit results store")
            return  # an empty file is a new SQLite database
        if head != SQLITE_HEADER:
            raise StoreError(
                f"{self.path} is not a onefit results store: not an SQLite database "
                f"(it starts with {head[:16]!r}); truncated, damaged or another kind of file"
            )

    def _open(self, create: bool) -> None:
        db = self.db
        db.execute("PRAGMA trusted_schema=OFF")  # never run SQL functions from the schema
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        objects = db.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
        if not objects and application_id == 0 and version == 0:
            if not create:
                raise StoreError(f"{self.path} holds no tables, not a onefit results store")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        else:
            legacy = application_id == 0 and version == 0
            if not legacy and application_id != APPLICATION_ID:
                raise StoreError(
                    f"{self.path} is an SQLite database but not a onefit results store "
                    f"(application id {application_id:#x}, onefit's is {APPLICATION_ID:#x})"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer onefit (store schema {version}; this "
                    f"onefit reads up to {SCHEMA_VERSION}): upgrade onefit"
                )
            if not legacy and version != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: unknown store schema version {version} "
                    f"(this onefit writes {SCHEMA_VERSION})"
                )
            self._check_objects(objects, legacy)
            self._check_integrity()
            if legacy:
                self._upgrade()
            self._check_columns()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")

    def _check_objects(self, objects: list[tuple[str, str, str]], legacy: bool) -> None:
        """Refuse triggers, views and tables or indexes onefit does not create."""
        tables, indexes = _reference()
        problems = []
        for kind, name, table in objects:
            if kind == "trigger":
                problems.append(f"trigger {name!r} on table {table!r}")
            elif kind == "view":
                problems.append(f"view {name!r}")
            elif kind == "table":
                if name not in tables and name != "sqlite_sequence":
                    problems.append(f"table {name!r}")
            elif kind == "index":
                if name not in indexes:
                    problems.append(f"index {name!r} on table {table!r}")
            else:
                problems.append(f"{kind} {name!r}")
        if problems:
            raise StoreError(
                f"{self.path} holds SQL objects onefit did not create ({', '.join(problems)}): "
                "refused, a results store has only onefit's tables and no triggers or views"
            )
        present = {name for kind, name, _ in objects if kind == "table"}
        if legacy and "runs" not in present:
            raise StoreError(
                f"{self.path} is an SQLite database but not a onefit results store "
                f"(no runs table; tables: {sorted(present)})"
            )

    def _check_integrity(self) -> None:
        rows = [r[0] for r in self.db.execute("PRAGMA quick_check(5)")]
        if rows != ["ok"]:
            raise StoreError(
                f"{self.path} is damaged (SQLite quick_check: {'; '.join(map(str, rows))})"
            )

    def _upgrade(self) -> None:
        """A store written before stores were marked: add what is missing, then mark it."""
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(evaluations)")}
        if "violation" not in columns:  # a store written before violations were kept
            self.db.execute("ALTER TABLE evaluations ADD COLUMN violation REAL")
        self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _check_columns(self) -> None:
        expected, found = _reference()[0], _tables(self.db)
        for table, columns in expected.items():
            if table not in found:
                raise StoreError(f"{self.path}: damaged results store, no table {table!r}")
            if found[table] != columns:
                want = [c[0] for c in columns]
                got = [c[0] for c in found[table]]
                raise StoreError(
                    f"{self.path}: table {table!r} does not have onefit's columns "
                    f"(expected {want} as onefit creates them, found {got})"
                )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------
    @_sqlite_errors
    def open_run(self, name: str, settings: Mapping[str, Any]) -> int:
        """The id of run ``name``, created if new; an existing run must have equal settings."""
        text = json.dumps(settings, sort_keys=True, default=str)
        row = self.db.execute("SELECT id, settings FROM runs WHERE name = ?", (name,)).fetchone()
        if row is not None:
            if row[1] != text:
                old, new = json.loads(row[1]), json.loads(text)
                differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise StoreError(
                    f"{self.path}: run {name!r} exists with other settings ({differ}); "
                    f"resume with the same settings or use another run name or store"
                )
            return int(row[0])
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO runs (name, settings, created) VALUES (?, ?, ?)",
                (name, text, time.time()),
            )
        return int(cursor.lastrowid or 0)

    @_sqlite_errors
    def run_id(self, name: str) -> int:
        """The id of the existing run ``name``."""
        row = self.db.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path} has no run {name!r}; runs: {self.runs()}")
        return int(row[0])

    @_sqlite_errors
    def settings(self, run_id: int) -> dict[str, Any]:
        """The settings run ``run_id`` was opened with (objectives, constraints, ...)."""
        row = self.db.execute("SELECT settings FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path} has no run with id {run_id}")
        try:
            settings = json.loads(row[0])
        except json.JSONDecodeError as error:
            raise StoreError(f"{self.path}: run {run_id} has damaged settings ({error})") from None
        if not isinstance(settings, dict):
            raise StoreError(f"{self.path}: run {run_id} has damaged settings")
        return settings

    @_sqlite_errors
    def runs(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM runs ORDER BY id")]

    # -- origin -----------------------------------------------------------------------------
    @_sqlite_errors
    def origin(self, name: str) -> SearchOrigin | None:
        """The :class:`SearchOrigin` recorded for run ``name``, or None."""
        row = self.db.execute(
            "SELECT value FROM metadata WHERE key = ?", (f"origin:{name}",)
        ).fetchone()
        return None if row is None else SearchOrigin.from_json(row[0], str(self.path))

    @_sqlite_errors
    def bind_origin(self, name: str, origin: SearchOrigin) -> None:
        """Record ``origin`` for the new run ``name``, or check the recorded one (a resumed
        search continues only on the run and weights it started on)."""
        recorded = self.origin(name)
        if recorded is not None:
            recorded.check(origin, self.path, name)
            return
        run = self.run_id(name)
        (count,) = self.db.execute(
            "SELECT COUNT(*) FROM evaluations WHERE run_id = ?", (run,)
        ).fetchone()
        if count:
            raise StoreError(
                f"{self.path}: search {name!r} records no run it was made from, and its "
                f"{count} evaluations may belong to other weights; search under another "
                "--run-name or --out"
            )
        with self.db:
            self.db.execute(
                "INSERT INTO metadata (key, value) VALUES (?, ?)",
                (f"origin:{name}", origin.to_json()),
            )

    @_sqlite_errors
    def check_origin(self, name: str, expected: SearchOrigin) -> None:
        """Raise :class:`StoreError` unless run ``name`` was searched on ``expected``'s run
        and weights (both ids named in the message)."""
        recorded = self.origin(name)
        if recorded is None:
            raise StoreError(
                f"{self.path}: search {name!r} records no run it was made from (written by "
                "onefit.search without origin=, or by an older onefit), so its results cannot "
                f"be read as this run's ({expected.run_id}); search this run with onefit search"
            )
        recorded.check(expected, self.path, name)

    # -- writing ----------------------------------------------------------------------------
    def _config_id(self, config: ArchConfig) -> int:
        text = config.to_json()
        self.db.execute("INSERT OR IGNORE INTO configs (json) VALUES (?)", (text,))
        row = self.db.execute("SELECT id FROM configs WHERE json = ?", (text,)).fetchone()
        return int(row[0])

    def _evaluation(
        self,
        run_id: int,
        config: ArchConfig,
        status: str,
        seconds: float | None,
        violation: float | None = None,
    ) -> int:
        config_id = self._config_id(config)
        try:
            cursor = self.db.execute(
                "INSERT INTO evaluations (run_id, config_id, status, seconds, created, violation)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, config_id, status, seconds, time.time(), violation),
            )
        except sqlite3.IntegrityError:
            raise StoreError(
                f"config {config.to_json()} was already evaluated in this run"
            ) from None
        return int(cursor.lastrowid or 0)

    @_sqlite_errors
    def record(
        self,
        run_id: int,
        config: Mapping[str, Any],
        metrics: Mapping[str, float],
        *,
        kinds: Mapping[str, str] | None = None,
        profiles: Mapping[str, Mapping[str, Any] | None] | None = None,
        seconds: float | None = None,
        violation: float | None = None,
    ) -> None:
        """Record a successful evaluation and all its metrics atomically.

        ``kinds`` maps metric names to ``measured`` (default), ``predicted`` or
        ``cheap``; ``profiles`` maps metric names to the device profile they were
        measured under; ``violation`` is the search's constraint violation (<= 0 feasible).
        """
        kinds, profiles = kinds or {}, profiles or {}
        now = time.time()
        with self.db:
            evaluation = self._evaluation(
                run_id,
                _as_config(config),
                "ok",
                seconds,
                None if violation is None else float(violation),
            )
            self.db.executemany(
                "INSERT INTO measurements (evaluation_id, metric, value, kind, profile, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        evaluation,
                        name,
                        float(value),
                        kinds.get(name, "measured"),
                        None if profiles.get(name) is None else json.dumps(profiles[name]),
                        now,
                    )
                    for name, value in metrics.items()
                ],
            )

    @_sqlite_errors
    def record_failure(
        self, run_id: int, config: Mapping[str, Any], reason: str, seconds: float | None = None
    ) -> None:
        """Record that evaluating ``config`` failed, and why."""
        with self.db:
            evaluation = self._evaluation(run_id, _as_config(config), "failed", seconds)
            self.db.execute(
                "INSERT INTO failures (evaluation_id, reason) VALUES (?, ?)", (evaluation, reason)
            )

    # -- reading ----------------------------------------------------------------------------
    @_sqlite_errors
    def history(self, run_id: int) -> list[Evaluation]:
        """Every evaluation of the run in order, failures included.

        A row that onefit could not have written (damaged JSON, an unknown status, a
        metric that is not a number) raises :class:`StoreError` naming the file."""
        try:
            return self._history(run_id)
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: damaged results store (SQLite: {error})") from None
        except (ValueError, TypeError, KeyError) as error:
            raise StoreError(f"{self.path}: damaged results store ({error})") from None

    def _history(self, run_id: int) -> list[Evaluation]:
        rows = self.db.execute(
            "SELECT e.id, c.json, e.status, e.seconds, f.reason, e.violation FROM evaluations e "
            "JOIN configs c ON c.id = e.config_id LEFT JOIN failures f ON f.evaluation_id = e.id "
            "WHERE e.run_id = ? ORDER BY e.id",
            (run_id,),
        ).fetchall()
        metrics: dict[int, dict[str, float]] = {}
        for evaluation, metric, value in self.db.execute(
            "SELECT m.evaluation_id, m.metric, m.value FROM measurements m "
            "JOIN evaluations e ON e.id = m.evaluation_id WHERE e.run_id = ?",
            (run_id,),
        ):
            if not isinstance(metric, str) or not isinstance(value, (int, float, type(None))):
                raise StoreError(
                    f"{self.path}: damaged measurement {metric!r} = {value!r} of evaluation "
                    f"{evaluation} (a metric name and a number expected)"
                )
            metrics.setdefault(evaluation, {})[metric] = value  # type: ignore[assignment]
        history = []
        for i, (eid, text, status, secs, reason, violation) in enumerate(rows):
            if status not in STATUSES or not isinstance(text, str):
                raise StoreError(
                    f"{self.path}: damaged evaluation {eid} (status {status!r}, config "
                    f"{str(text)[:80]!r})"
                )
            for name, number in (("seconds", secs), ("violation", violation)):
                if not isinstance(number, (int, float, type(None))):
                    raise StoreError(f"{self.path}: evaluation {eid} has {name} {number!r}")
            config = ArchConfig.from_json(text)
            history.append(
                Evaluation(i, config, status, metrics.get(eid, {}), reason, secs, violation)
            )
        return history

    @_sqlite_errors
    def measurement_rows(self, run_id: int) -> list[dict[str, Any]]:
        """Every measurement with its kind and profile (for audits and exports)."""
        cursor = self.db.execute(
            "SELECT e.id, c.json, m.metric, m.value, m.kind, m.profile FROM measurements m "
            "JOIN evaluations e ON e.id = m.evaluation_id JOIN configs c ON c.id = e.config_id "
            "WHERE e.run_id = ? ORDER BY e.id, m.metric",
            (run_id,),
        )
        names = ["evaluation", "config", "metric", "value", "kind", "profile"]
        return [dict(zip(names, row)) for row in cursor]

    # -- export -----------------------------------------------------------------------------
    @_sqlite_errors
    def table(self, run_id: int) -> tuple[list[str], list[list[Any]]]:
        """One row per evaluation: index, dimensions, metrics, status, reason."""
        history = self.history(run_id)
        dims = list(dict.fromkeys(k for e in history for k in e.config))
        metrics = list(dict.fromkeys(k for e in history for k in e.metrics))
        header = ["index", *dims, *metrics, "status", "reason"]
        rows = [
            [e.index, *(e.config.get(d) for d in dims), *(e.metrics.get(m) for m in metrics),
             e.status, e.reason or ""]
            for e in history
        ]  # fmt: skip
        return header, rows

    def export_csv(self, path: str | Path, run_id: int) -> Path:
        header, rows = self.table(run_id)
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    def export_parquet(self, path: str | Path, run_id: int) -> Path:
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError(
                "Parquet export needs pandas and pyarrow: pip install pandas pyarrow"
            ) from None
        header, rows = self.table(run_id)
        pd.DataFrame(rows, columns=header).to_parquet(path)
        return Path(path)
