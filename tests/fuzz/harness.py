"""The fuzz suite's judge: run one generated input, say what became of it, and record it.

Every property in ``tests/fuzz`` hands each generated input to :func:`expect_clean` (a
library call) or :func:`expect_clean_cli` (a command line). The outcome is one of:

* ``ok`` -- the input was accepted and did what it should (``check`` passed, if given);
* ``clean_error`` -- a :class:`onefit.errors.UserError` whose message names what was
  wrong (each of ``mentions`` appears in it); on the command line: exit status 2, one
  line, no traceback;
* ``unclear_error`` -- a ``UserError`` whose message does not name what was wrong;
* ``raw_traceback`` -- any other exception (a ``KeyError`` from deep inside, a torch
  error, a plain ``ValueError`` that onefit did not mean to raise); on the command line:
  an internal error (exit 1) or "Traceback" in the output;
* ``silent_wrong`` -- a bad input accepted (``expect="error"`` but it returned), or a
  good one whose result fails ``check``;
* ``hang`` -- still running after ``timeout`` seconds.

Only ``ok`` and ``clean_error`` pass. Two environment variables turn the suite into the
benchmark (``benchmarks/fuzz_suite.py``): ``ONEFIT_FUZZ_RECORD=<file>`` appends every
verdict to that file as a JSON line, and ``ONEFIT_FUZZ_COLLECT=1`` records without
failing, so that every generated input is counted. ``ONEFIT_FUZZ=thorough`` multiplies
the number of examples of every property (see :func:`fuzz_settings`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from hypothesis import HealthCheck, settings

from onefit.errors import UserError

PASSING = ("ok", "clean_error")
OUTCOMES = ("ok", "clean_error", "unclear_error", "raw_traceback", "silent_wrong", "hang")
# How many times more examples each property runs in the thorough profile.
THOROUGH_FACTOR = 15


def fuzz_settings(examples: int = 200) -> settings:
    """Hypothesis settings for a fuzz property: ``examples`` in CI (derandomized, so CI
    is reproducible), ``THOROUGH_FACTOR`` times as many, freshly random, in the thorough
    profile (``ONEFIT_FUZZ=thorough``)."""
    thorough = os.environ.get("ONEFIT_FUZZ") == "thorough"
    # ONEFIT_FUZZ_FACTOR overrides the multiplier (a shorter thorough run on a busy machine).
    factor = int(os.environ.get("ONEFIT_FUZZ_FACTOR", THOROUGH_FACTOR))
    return settings(
        max_examples=examples * factor if thorough else examples,
        deadline=None,
        derandomize=not thorough,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )  # fmt: skip


@dataclass
class Verdict:
    category: str
    outcome: str
    case: str  # the input, abbreviated
    error_type: str = ""
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome in PASSING

    def describe(self) -> str:
        text = f"[{self.category}] {self.outcome} for {self.case}"
        if self.error_type:
            text += f": {self.error_type}: {self.message}"
        return text


class _Hang(BaseException):
    """Raised by the alarm in the call that ran past its time (BaseException: not caught
    by the code under test's ``except Exception``)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _abbreviate(case: Any, limit: int = 300) -> str:
    text = case if isinstance(case, str) else repr(case)
    return text if len(text) <= limit else text[:limit] + "..."


def judge(
    category: str,
    case: Any,
    call: Callable[[], Any],
    *,
    expect: str = "error",
    mentions: Sequence[str] = (),
    check: Callable[[Any], Any] | None = None,
    timeout: float = 30.0,
) -> Verdict:
    """Run ``call()`` on the generated input ``case`` and classify what happened.

    ``expect``: ``"error"`` (the input is bad: only a clean error passes), ``"ok"`` (it is
    good: it must succeed and pass ``check``) or ``"either"`` (a clean error or a success
    that passes ``check``). ``mentions``: text a clean error's message must contain
    (case-insensitive), such as the name of the bad setting. ``check`` raises
    ``AssertionError`` when a result is wrong.
    """
    if expect not in ("error", "ok", "either"):
        raise ValueError(f"expect must be 'error', 'ok' or 'either', got {expect!r}")
    shown = _abbreviate(case)
    try:
        with _time_limit(timeout):
            result = call()
    except _Hang:
        return _record(Verdict(category, "hang", shown))
    except UserError as error:
        message = str(error)
        named = all(text.lower() in message.lower() for text in mentions)
        outcome = "clean_error" if expect != "ok" and message and named else "unclear_error"
        if expect == "ok":
            outcome = "silent_wrong"  # a good input refused is wrong too
        return _record(Verdict(category, outcome, shown, type(error).__name__, message[:500]))
    except Exception as error:
        return _record(
            Verdict(category, "raw_traceback", shown, type(error).__name__, str(error)[:500])
        )
    if expect == "error":
        return _record(Verdict(category, "silent_wrong", shown, message="accepted"))
    if check is not None:
        try:
            check(result)
        except AssertionError as wrong:
            return _record(Verdict(category, "silent_wrong", shown, message=str(wrong)[:500]))
    return _record(Verdict(category, "ok", shown))


def judge_cli(
    category: str,
    args: Sequence[str],
    *,
    expect: str = "error",
    mentions: Sequence[str] = (),
    input: str | None = None,
    timeout: float = 60.0,
) -> Verdict:
    """Run ``onefit ARGS`` in this process (click's runner) and classify its outcome.

    A clean error is exit status 2 with a single line ``Error: ...`` naming
    ``mentions`` and no "Traceback"; exit 1 (an internal error) or a traceback is a
    raw traceback; exit 0 for a bad input is a silent wrong run.
    """
    from click.testing import CliRunner

    from onefit.cli import cli

    shown = _abbreviate(" ".join(args))
    try:
        with _time_limit(timeout):
            result = CliRunner().invoke(cli, list(args), input=input)
    except _Hang:
        return _record(Verdict(category, "hang", shown))
    output = result.output.strip()
    crashed = result.exception is not None and result.exit_code not in (0, 1, 2)
    if "Traceback" in output or crashed:
        kind = type(result.exception).__name__ if result.exception else "Traceback"
        return _record(Verdict(category, "raw_traceback", shown, kind, output[-500:]))
    if result.exit_code == 0:
        outcome = "ok" if expect != "error" else "silent_wrong"
        return _record(Verdict(category, outcome, shown, message=output[-300:]))
    if result.exit_code == 2:
        lines = [line for line in output.splitlines() if line.strip()]
        named = all(text.lower() in output.lower() for text in mentions)
        clean = expect != "ok" and named and (len(lines) == 1 or _usage_error(lines))
        refused = "silent_wrong" if expect == "ok" else "unclear_error"
        outcome = "clean_error" if clean else refused
        return _record(Verdict(category, outcome, shown, "exit 2", output[-500:]))
    status = f"exit {result.exit_code}"
    return _record(Verdict(category, "raw_traceback", shown, status, output[-500:]))


def _usage_error(lines: list[str]) -> bool:
    """click's own usage errors (an unknown option, a missing argument) print the usage
    line, a hint and ``Error: ...``: clear, though not one line."""
    return lines[-1].startswith("Error:") and lines[0].startswith("Usage:")


def _record(verdict: Verdict) -> Verdict:
    path = os.environ.get("ONEFIT_FUZZ_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(verdict)) + "\n")
    return verdict


def _collecting() -> bool:
    return os.environ.get("ONEFIT_FUZZ_COLLECT") == "1"


def expect_clean(category: str, case: Any, call: Callable[[], Any], **options: Any) -> Verdict:
    """:func:`judge`, then fail the test unless the outcome passes (not when collecting)."""
    verdict = judge(category, case, call, **options)
    assert verdict.passed or _collecting(), verdict.describe()
    return verdict


def expect_clean_cli(category: str, args: Sequence[str], **options: Any) -> Verdict:
    """:func:`judge_cli`, then fail the test unless the outcome passes (not when collecting)."""
    verdict = judge_cli(category, args, **options)
    assert verdict.passed or _collecting(), verdict.describe()
    return verdict
