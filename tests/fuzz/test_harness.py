"""The fuzz judge itself: each outcome is recognised, so that a property cannot pass by
misreading a traceback as a clean error."""

from __future__ import annotations

import time

import pytest

from onefit.errors import UserError
from tests.fuzz.harness import judge, judge_cli


@pytest.fixture(autouse=True)
def _not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """These verdicts are made up: keep them out of the benchmark's counts."""
    monkeypatch.delenv("ONEFIT_FUZZ_RECORD", raising=False)


def _raise(error: BaseException) -> None:
    raise error


def test_a_user_error_naming_the_input_is_clean() -> None:
    verdict = judge("demo", 1, lambda: _raise(UserError("lr=1 is bad")), mentions=["lr"])
    assert verdict.outcome == "clean_error" and verdict.passed


def test_a_user_error_that_does_not_name_the_input_is_unclear() -> None:
    verdict = judge("demo", 1, lambda: _raise(UserError("bad")), mentions=["lr"])
    assert verdict.outcome == "unclear_error" and not verdict.passed


def test_a_plain_exception_is_a_raw_traceback() -> None:
    for error in (KeyError("model"), ValueError("x"), TypeError("y"), RuntimeError("z")):
        verdict = judge("demo", 1, lambda error=error: _raise(error))
        assert verdict.outcome == "raw_traceback" and not verdict.passed


def test_a_bad_input_accepted_is_silent_wrong() -> None:
    assert judge("demo", 1, lambda: 3).outcome == "silent_wrong"


def test_a_good_input_must_pass_its_check() -> None:
    def check(result: int) -> None:
        assert result == 4, result

    assert judge("demo", 1, lambda: 4, expect="ok", check=check).outcome == "ok"
    assert judge("demo", 1, lambda: 3, expect="ok", check=check).outcome == "silent_wrong"
    assert judge("demo", 1, lambda: _raise(UserError("no")), expect="ok").outcome == "silent_wrong"


def test_a_call_past_its_time_is_a_hang() -> None:
    verdict = judge("demo", 1, lambda: time.sleep(5), timeout=0.2)
    assert verdict.outcome == "hang"


def test_cli_user_error_is_clean_and_usage_error_too() -> None:
    verdict = judge_cli("demo", ["train", "--set", "lr=abc"], mentions=["lr"])
    assert verdict.outcome == "clean_error", verdict.describe()
    assert judge_cli("demo", ["train", "--no-such-option"]).outcome == "clean_error"
    assert judge_cli("demo", ["list"], expect="ok").outcome == "ok"
