"""Fuzz: generated constraint and pick strings (categories "constraints" and "picks").

Strings are built from labelled parts (a metric, an operator, a number, a suffix, junk),
so the oracle knows whether each is well formed and, when it is, the bound it must
parse to. A malformed string must be a clean error naming it; a good one must parse to
the intended metric, operator and value.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onefit.deploy.picks import NAMED_PICKS, SearchRecord, parse_pick, pick
from onefit.errors import UserError
from onefit.search.constraints import parse_constraints
from onefit.search.store import Evaluation
from onefit.space import ArchConfig
from tests.fuzz.harness import expect_clean, fuzz_settings

KNOWN = ("latency_ms", "macs", "params", "accuracy", "peak_memory_bytes", "loss")
FLIP = {"<=": ">=", ">=": "<=", "<": ">", ">": "<"}
# (text, factor, which metrics it suits: "any", "ms", "bytes")
GOOD_SUFFIXES = [("", 1.0, "any"), ("k", 1e3, "any"), ("M", 1e6, "any"), ("G", 1e9, "any"),
                 ("ms", 1.0, "ms"), ("s", 1e3, "ms"), ("us", 1e-3, "ms"), ("MiB", 2.0**20, "bytes"),
                 ("kB", 1e3, "bytes"), ("B", 1.0, "bytes")]  # fmt: skip
BAD_SUFFIXES = ["apples", "m", "Mb", "x", "ms2", "hz"]


@st.composite
def constraint_strings(
    draw: st.DrawFn, metric_flaws: bool = True
) -> tuple[str, dict[str, Any] | None]:
    """A string and, when it is well formed, what it must parse to (else None).

    About a third are well formed; the others have one flaw (or a negative bound on a
    cost, which is also refused)."""
    # A pick parses any metric name (which ones the search recorded is checked when
    # picking) and strips the whitespace around each part, so pick strings are generated
    # without the "unknown metric", "long" (whitespace-padded) and letter-junk flaws.
    flaws = ["metric", "long"] * metric_flaws + ["op", "number", "suffix", "junk", "empty"]
    flaw = draw(st.sampled_from(["none"] * 4 + flaws))
    good = flaw == "none"
    if flaw == "metric":
        metric = draw(st.sampled_from(["latency", "acc", "Macs", "μs", "9x", "", "a b"]))
    else:
        metric = draw(st.sampled_from(KNOWN))
    if flaw == "op":
        op = draw(st.sampled_from(["==", "=", "=<", "!=", "≤", "", "<<", "=>"]))
    else:
        op = draw(st.sampled_from(sorted(FLIP)))
    good_kinds = ["int", "float", "exp", "neg"]
    kind = draw(st.sampled_from(["nan", "inf", "huge", "junk"] if flaw == "number" else good_kinds))
    if kind == "int":
        number = str(draw(st.integers(0, 10**6)))
    elif kind == "float":
        number = repr(draw(st.floats(0, 1e6, allow_nan=False)))
    elif kind == "exp":
        number = f"{draw(st.integers(0, 99))}e{draw(st.integers(-5, 9))}"
    elif kind == "neg":
        number = f"-{draw(st.integers(1, 100))}"
    elif kind == "nan":
        number = draw(st.sampled_from(["nan", "NaN", "-nan"]))
    elif kind == "inf":
        number = draw(st.sampled_from(["inf", "-inf", "Infinity", "1e999"]))
    elif kind == "huge":
        number = "9" * 400  # overflows float
    else:
        number = draw(st.sampled_from(["", "five", "1.2.3", "0x10", "٣", "1e", "--1"]))
    unit = "ms" if metric.endswith("_ms") else "bytes" if metric.endswith("_bytes") else ""
    suited = [x for x in GOOD_SUFFIXES if x[2] in ("any", unit)]
    unsuited = [x for x in GOOD_SUFFIXES if x[2] not in ("any", unit)]
    if flaw == "suffix":
        bad = [(x, 1.0, "bad") for x in BAD_SUFFIXES] + unsuited
        suffix, factor, _ = draw(st.sampled_from(bad))
    else:
        suffix, factor, _ = draw(st.sampled_from(suited))
    cost = metric.endswith(("_ms", "_bytes")) or metric in ("macs", "params")
    if kind == "neg" and cost:
        good = False
    space = draw(st.sampled_from(["", " ", "  "]))
    bound = f"{number}{draw(st.sampled_from(['', ' ']))}{suffix}"
    number_first = draw(st.booleans())
    if number_first and op in FLIP:
        text = f"{bound}{space}{op}{space}{metric}"
    else:
        text = f"{metric}{space}{op}{space}{bound}"
    if flaw == "junk":
        # (letters after a metric name spell another metric: a flaw only by name)
        junk = [" ;", " and", "\x00", " # c", ")"] + ["x", "é"] * metric_flaws
        text += draw(st.sampled_from(junk))
    if flaw == "long":
        text += " " * 300  # too long, however well formed
    if flaw == "empty":
        text = draw(st.sampled_from(["", " ", "\t"]))
    if not good:
        return text, None
    value = float(number) * factor
    if not math.isfinite(value):
        return text, None
    want_op = FLIP[op] if number_first else op
    return text, {"metric": metric, "op": want_op, "bound": value}


def _mentions(text: str) -> list[str]:
    """A clean error names the string (as repr shows it, possibly abbreviated)."""
    shown = repr(text)[1:-1].strip()
    return ["constraint", shown[:40]] if shown else ["constraint"]


@fuzz_settings(200)
@given(constraint_strings())
def test_generated_constraint_strings(case: tuple[str, dict[str, Any] | None]) -> None:
    text, want = case

    def check(parsed: list) -> None:
        (c,) = parsed
        assert want is not None
        assert (c.metric, c.op) == (want["metric"], want["op"]), (c, want)
        assert math.isclose(c.bound, want["bound"], rel_tol=1e-12, abs_tol=1e-300), (c, want)

    expect_clean(
        "constraints",
        text,
        lambda: parse_constraints([text], KNOWN),
        expect="ok" if want is not None else "error",
        mentions=[] if want is not None else _mentions(text),
        check=check,
    )


def _empty(parsed: list) -> None:
    assert parsed == [], parsed


@fuzz_settings(30)
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=4), st.just("x<1")))
def test_non_list_constraints(specs: Any) -> None:
    """Constraints are a list: anything else (even one string) is a clean error."""
    expect_clean(
        "constraints",
        specs,
        lambda: parse_constraints(specs, KNOWN),
        expect="ok" if specs is None else "error",
        mentions=[] if specs is None else ["constraints are a list"],
        check=_empty,
    )


def _constraint_pick(cases: list[tuple[str, Any]]) -> tuple[Any, str, Any]:
    """Constraints joined by "and": good only when every part is (as generated)."""
    good = all(parsed is not None for _, parsed in cases)
    return " and ".join(text for text, _ in cases), "ok" if good else "error", "constraints"


# (pick, "ok"/"error", the kind it parses to): every expectation comes from how the
# input was generated, never from the parser under test.
PICKS = st.one_of(
    st.sampled_from([(name, "ok", "named") for name in NAMED_PICKS]),
    st.sampled_from(
        [(text, "error", None) for text in ["Knee", "most_accurate", "best", "", "   ", "and"]]
    ),
    st.lists(constraint_strings(metric_flaws=False), min_size=1, max_size=3).map(_constraint_pick),
    st.sampled_from(
        [
            ('{"ks.0": 3, "r": 32}', "ok", "config"),
            ('{"a": NaN}', "error", None),
            ('{"a": 1', "error", None),
            ("{", "error", None),
            ('{"a": Infinity}', "error", None),
            ("[1, 2]", "error", None),
            ('{"a": [1]}', "ok", "config"),  # a config, checked against the space later
        ]
    ),
    st.sampled_from([(value, "error", None) for value in [None, 5, 2.5, [1], b"knee"]]),
)


@fuzz_settings(150)
@given(PICKS)
def test_generated_pick_strings(case: tuple[Any, str, Any]) -> None:
    choice, expect, kind = case

    def check(parsed: tuple[str, Any]) -> None:
        assert parsed[0] == kind, (parsed, kind)

    expect_clean("picks", choice, lambda: parse_pick(choice), expect=expect,
                 mentions=["pick"] if expect == "error" else [], check=check)  # fmt: skip


RECORD = SearchRecord(
    history=[],
    objectives={"accuracy": "max", "macs": "min"},
    pareto=[
        Evaluation(i, ArchConfig({"ks.0": k, "r": 32}), "ok",
                   {"accuracy": a, "macs": m, "latency_ms": t, "params": p})
        for i, (k, a, m, t, p) in enumerate([(3, 0.6, 1e6, 1.0, 5e3), (5, 0.7, 2e6, 2.0, 8e3),
                                             (7, 0.8, 4e6, 3.5, 1.2e4)])
    ],
)  # fmt: skip


@fuzz_settings(80)
@given(PICKS)
def test_picks_from_a_search_record(case: tuple[Any, str, Any]) -> None:
    """A generated pick against a small Pareto set: a clean error for a bad one; a good
    one may still be refused cleanly (a metric the search did not record, nothing
    satisfies it), else it gives a Pareto config. What each good pick must choose is
    pinned in test_each_form_of_pick_chooses_the_right_config."""
    choice, expect, _ = case
    configs = [dict(e.config) for e in RECORD.pareto]

    def check(found: tuple[str, dict]) -> None:
        label, config = found
        assert label == "config" or config in configs, found

    expect_clean("picks", choice, lambda: pick(RECORD, choice),
                 expect="either" if expect == "ok" else "error",
                 mentions=["pick"] if expect == "error" else [], check=check)  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "ks"),
    [
        ("most-accurate", 7),
        ("smallest", 3),
        ("latency_ms <= 2.5", 5),
        ("macs < 1.5M and params > 1k", 3),
        ("macs <= 4M and accuracy >= 0.65", 7),
        ('{"ks.0": 5, "r": 32}', 5),
        ("macs <= 1k", None),  # nothing satisfies it
        ("peak_memory_bytes <= 1MiB", None),  # not recorded by the search
    ],
)
def test_each_form_of_pick_chooses_the_right_config(choice: str, ks: int | None) -> None:
    if ks is None:
        with pytest.raises(UserError):
            pick(RECORD, choice)
        return
    _, config = pick(RECORD, choice)
    assert dict(config)["ks.0"] == ks
