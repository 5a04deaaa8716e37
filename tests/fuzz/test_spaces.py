"""Fuzz: generated search spaces and configs (category "spaces").

Each generated space is judged against an oracle written here from the rules of
:class:`onefit.space.Dimension` (one kind per dimension, finite, ordered, distinct): a
bad one must be a clean error naming the first bad dimension; a good one must build,
keep its choices, write standard JSON and read it back, and round-trip its configs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from onefit.space import ArchConfig, SearchSpace
from tests.fuzz.harness import expect_clean, fuzz_settings

NAMES = st.text("abcdek._0123é", min_size=1, max_size=6)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
SCALARS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-(10**30), 10**30),
    FINITE,
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0]),
    st.text(max_size=4),
    st.sampled_from(["\ud800", "<script>", ""]),
    st.booleans(),
    st.none(),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.lists(st.integers(0, 3), max_size=2),
)
# One kind per dimension most of the time, so that good spaces are common.
HOMOGENEOUS = st.one_of(
    st.lists(st.integers(-100, 100), min_size=1, max_size=6),
    st.lists(st.one_of(st.integers(-5, 5), FINITE), min_size=1, max_size=6),
    st.lists(st.text("xyz", max_size=3), min_size=1, max_size=6),
    st.lists(st.booleans(), min_size=1, max_size=2),
)
CHOICES = st.one_of(
    HOMOGENEOUS,
    HOMOGENEOUS.map(tuple),
    st.lists(SCALARS, max_size=5),
    HOMOGENEOUS.map(set),
    HOMOGENEOUS.map(frozenset),
    st.sampled_from([None, 5, "abc", {"a": 1}, range(0), range(3)]),
)
SPACES = st.one_of(
    st.dictionaries(
        NAMES, HOMOGENEOUS.map(lambda v: list(dict.fromkeys(v))), min_size=1, max_size=4
    ),  # mostly good: distinct choices of one kind
    st.dictionaries(NAMES, HOMOGENEOUS, min_size=1, max_size=3),
    st.dictionaries(NAMES, CHOICES, max_size=4),
    st.dictionaries(st.one_of(NAMES, st.integers(), st.just("")), CHOICES, max_size=3),
    st.sampled_from([None, 3, "space", [1, 2], [("a", [1])]]),
)


def _kind(value: Any) -> str | None:
    """bool, number (ints and floats mix) or str; None for anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    return None


def _problem(name: Any, choices: Any) -> bool:
    """Whether dimension ``name: choices`` is bad, by the documented rules."""
    if not isinstance(name, str) or not name:
        return True
    if not isinstance(choices, (list, tuple, range)):
        return True
    values = list(choices)
    if not values:
        return True
    kinds = set()
    for value in values:
        kind = _kind(value)
        if kind is None:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return True
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        kinds.add(kind)
    if len(kinds) > 1:
        return True
    distinct: list[Any] = []
    for value in values:
        if any(value == seen for seen in distinct):  # the slow, obvious check
            return True
        distinct.append(value)
    return False


def _oracle(dims: Any) -> tuple[str, list[str]]:
    """("ok", []) or ("error", what the message must name)."""
    if not isinstance(dims, dict):
        return "error", ["mapping"]
    if not dims:
        return "error", ["at least one dimension"]
    for name, choices in dims.items():
        if _problem(name, choices):
            if not isinstance(name, str) or not name:
                return "error", ["dimension name"]
            return "error", [repr(name)]
    return "ok", []


def _check_space(dims: dict) -> Any:
    def check(space: SearchSpace) -> None:
        for name, choices in dims.items():
            got = space[name].choices
            assert sorted(map(repr, got)) == sorted(map(repr, choices)), (name, got)
            assert len(got) == len(set(got))
        text = space.to_json()
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
        again = SearchSpace.from_json(text)
        assert again == space, (again, space)
        for config in (space.smallest(), space.largest(), space.sample(seed=0)):
            assert space.validate(ArchConfig.from_json(config.to_json())) == config

    return check


@fuzz_settings(150)
@given(SPACES)
def test_generated_spaces(dims: Any) -> None:
    expect, mentions = _oracle(dims)
    expect_clean(
        "spaces",
        dims,
        lambda: SearchSpace(dims),
        expect=expect,
        mentions=mentions,
        check=_check_space(dims) if expect == "ok" else None,
    )


GOOD_SPACE = SearchSpace(
    {"ks.0": [3, 5, 7], "e": [0.5, 1, 2.5], "op": ["conv", "skip"], "se": [False, True]}
)
VALUES = st.one_of(
    st.sampled_from([3, 5, 7, 3.0, 0.5, 1, 1.0, 2.5, "conv", "skip", True, False]),
    SCALARS,
)


def _allowed(name: str, value: Any) -> bool:
    choices = GOOD_SPACE[name].choices
    if isinstance(value, bool) or isinstance(choices[0], bool):
        return isinstance(value, bool) and isinstance(choices[0], bool) and value in choices
    if isinstance(choices[0], str):
        return isinstance(value, str) and value in choices
    return isinstance(value, (int, float)) and any(value == c for c in choices)


@fuzz_settings(100)
@given(
    st.dictionaries(st.sampled_from([*GOOD_SPACE.names, "zz"]), VALUES, min_size=3, max_size=5),
    st.booleans(),
)
def test_generated_configs(config: dict, as_json: bool) -> None:
    missing = [n for n in GOOD_SPACE.names if n not in config]
    unknown = [k for k in config if k not in GOOD_SPACE]
    bad = [n for n in GOOD_SPACE.names if n in config and not _allowed(n, config[n])]
    non_finite = [v for v in config.values() if isinstance(v, float) and not math.isfinite(v)]
    not_scalar = [k for k in sorted(config) if _kind(config[k]) is None or config[k] == "\ud800"]
    if as_json and non_finite:
        # the first of NaN / Infinity / -Infinity the parser meets is named
        first = next(v for v in config.values() if v in non_finite or v != v)
        expect, mentions = "error", ["NaN" if first != first else "Infinity"]
    elif as_json and not_scalar:
        expect, mentions = "error", [repr(not_scalar[0])]
    elif missing:
        expect, mentions = "error", [repr(missing[0])]
    elif unknown:
        expect, mentions = "error", [repr(unknown[0])]
    elif bad:
        expect, mentions = "error", [f"dimension {bad[0]!r}", "not allowed"]
    else:
        expect, mentions = "ok", []

    def call() -> ArchConfig:
        if as_json:
            return GOOD_SPACE.validate(ArchConfig.from_json(json.dumps(config)))
        return GOOD_SPACE.validate(config)

    def check(found: ArchConfig) -> None:
        want = {k: GOOD_SPACE[k].choices[GOOD_SPACE[k].index(v)] for k, v in config.items()}
        assert found == want and ArchConfig.from_json(found.to_json()) == found

    expect_clean("spaces", config, call, expect=expect, mentions=mentions, check=check)
