"""A search killed with SIGKILL at several points and restarted loses and repeats nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import sys, time
import onefit

space = onefit.SearchSpace({"a": list(range(6)), "b": list(range(5)), "c": ["x", "y"]})

def evaluate(config):
    time.sleep(0.03)
    return {"accuracy": config["a"] * 2 + config["b"] - (config["c"] == "y"),
            "latency": 1 + config["a"] + 0.5 * config["b"]}

onefit.run_search(space, evaluate, {"accuracy": "max", "latency": "min"}, strategy=sys.argv[2],
              budget=int(sys.argv[3]), batch_size=3, store=sys.argv[1], progress=False)
"""


def evaluated(store: Path) -> list[str]:
    if not store.exists():
        return []
    db = sqlite3.connect(store)
    try:
        return [r[0] for r in db.execute(
            "SELECT c.json FROM evaluations e JOIN configs c ON c.id = e.config_id ORDER BY e.id"
        )]  # fmt: skip
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        db.close()


# random keeps no state between rounds (its resume is the store's alone): slow, for CI time.
@pytest.mark.parametrize(
    "strategy", [pytest.param("random", marks=pytest.mark.slow), "nsga2", "linas"]
)
def test_sigkill_at_several_points_then_resume(tmp_path, strategy):
    store, budget = tmp_path / "results.db", 24
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(script), str(store), strategy, str(budget)]
    snapshots = []
    for kill_after in (2, 7, 12, 18):
        process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 120
        while len(evaluated(store)) < kill_after and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        snapshots.append(evaluated(store))
    subprocess.run(command, env=env, check=True, timeout=300)
    final = evaluated(store)
    assert len(final) == budget and len(set(final)) == budget
    for snapshot in snapshots:  # every evaluation recorded before a kill is still there
        assert final[: len(snapshot)] == snapshot
    assert len(snapshots[-1]) >= 18  # the kills really happened mid-search
