"""The fuzz suite's thorough profile as a benchmark: how onefit answers generated bad input.

Runs ``tests/fuzz`` with ``ONEFIT_FUZZ=thorough`` (every property runs 15x its CI
examples, freshly random) and ``ONEFIT_FUZZ_COLLECT=1`` (no property stops at its first
failure, so every generated input is counted), records each verdict of the judge in
``tests/fuzz/harness.py`` and tabulates them per category: cases, accepted (ok), clean
errors, unclear errors, raw tracebacks, silent wrong runs and hangs.

Target (issue 14): at least 3,000 generated inputs; 0 raw tracebacks, 0 silent wrong
runs, 0 hangs.

Usage:
    python benchmarks/fuzz_suite.py [--json benchmarks/results/fuzz_suite.json] [-k EXPR]
                                    [--factor N]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("ok", "clean_error", "unclear_error", "raw_traceback", "silent_wrong", "hang")


def run_suite(record: Path, select: str | None, factor: int | None) -> tuple[int, float]:
    """Run the fuzz tests in thorough, collecting mode; the pytest status and wall time."""
    env = {**os.environ, "ONEFIT_FUZZ": "thorough", "ONEFIT_FUZZ_COLLECT": "1",
           "ONEFIT_FUZZ_RECORD": str(record)}  # fmt: skip
    if factor is not None:
        env["ONEFIT_FUZZ_FACTOR"] = str(factor)
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider"]
    if select:
        command += ["-k", select]
    start = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT, env=env).returncode
    return status, time.perf_counter() - start


def tabulate(record: Path) -> dict[str, dict[str, int]]:
    """Verdict counts per category (and a ``total`` row)."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in record.read_text(encoding="utf-8").splitlines():
        verdict = json.loads(line)
        counts[verdict["category"]][verdict["outcome"]] += 1
        counts["total"][verdict["outcome"]] += 1
    return {
        category: {"cases": sum(c.values()), **{o: c[o] for o in OUTCOMES}}
        for category, c in sorted(counts.items(), key=lambda item: item[0] == "total")
    }


def failures(record: Path, limit: int = 40) -> list[dict[str, Any]]:
    """The first ``limit`` verdicts that did not pass, for the report."""
    bad = []
    for line in record.read_text(encoding="utf-8").splitlines():
        verdict = json.loads(line)
        if verdict["outcome"] not in ("ok", "clean_error"):
            bad.append(verdict)
    return bad[:limit]


def markdown(table: dict[str, dict[str, int]]) -> str:
    header = "| category | cases | " + " | ".join(OUTCOMES) + " |"
    rows = [header, "|---|" + "---:|" * (len(OUTCOMES) + 1)]
    for category, row in table.items():
        cells = [str(row["cases"])] + [str(row[o]) for o in OUTCOMES]
        name = f"**{category}**" if category == "total" else category
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the counts and failures here")
    parser.add_argument("-k", dest="select", help="pytest -k expression (a subset)")
    parser.add_argument(
        "--factor", type=int, help="examples per property as a multiple of CI's (default 15)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "verdicts.jsonl"
        record.touch()
        status, seconds = run_suite(record, args.select, args.factor)
        table, bad = tabulate(record), failures(record)
    print(markdown(table))
    print(f"\npytest exit status {status}; {seconds:.0f} s")
    for verdict in bad:
        print(f"- [{verdict['category']}] {verdict['outcome']}: {verdict['case'][:120]}"
              f" -> {verdict['error_type']}: {verdict['message'][:160]}")  # fmt: skip
    if args.json:
        result = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d"),
            "factor": args.factor or 15,
            "pytest_status": status,
            "wall_seconds": seconds,
            "counts": table,
            "failures": bad,
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
