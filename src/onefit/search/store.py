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
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onefit.errors import MissingDependencyError, UserError
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
"""


class StoreError(UserError):
    """The store file is not a onefit results store, or a run's settings changed."""


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


def _as_config(config: Mapping[str, Any]) -> ArchConfig:
    return config if isinstance(config, ArchConfig) else ArchConfig(config)


class ResultStore:
    """A SQLite results store (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(evaluations)")}
            if "violation" not in columns:  # a store written before violations were kept
                self.db.execute("ALTER TABLE evaluations ADD COLUMN violation REAL")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path} is not a onefit results store ({error})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------
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

    def run_id(self, name: str) -> int:
        """The id of the existing run ``name``."""
        row = self.db.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path} has no run {name!r}; runs: {self.runs()}")
        return int(row[0])

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

    def runs(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM runs ORDER BY id")]

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
    def history(self, run_id: int) -> list[Evaluation]:
        """Every evaluation of the run in order, failures included."""
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
            metrics.setdefault(evaluation, {})[metric] = value
        return [
            Evaluation(
                i, ArchConfig.from_json(text), status, metrics.get(eid, {}), reason, secs, violation
            )
            for i, (eid, text, status, secs, reason, violation) in enumerate(rows)
        ]

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
