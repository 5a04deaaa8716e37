"""Constraints on metrics: strings like ``"latency_ms <= 5"`` or callables.

A constraint's *violation* is a number that is <= 0 when the constraint holds and grows
with how far it is broken, so strategies can prefer "less infeasible" configs.

Strings are parsed by a small grammar, never ``eval``: ``NAME OP NUMBER`` or
``NUMBER OP NAME`` with OP one of ``<= < >= >``.

Example:
    >>> c = parse_constraint("macs <= 300e6")
    >>> c.metric, c.violation({"macs": 250e6}) <= 0, c.violation({"macs": 310e6}) > 0
    ('macs', True, True)
    >>> parse_constraint("10 > latency_ms").violation({"latency_ms": 12.0})
    2.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from onefit.errors import UserError, UserTypeError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_OP = r"<=|>=|<|>"
_METRIC_FIRST = re.compile(rf"^\s*({_NAME})\s*({_OP})\s*({_NUMBER})\s*$")
_NUMBER_FIRST = re.compile(rf"^\s*({_NUMBER})\s*({_OP})\s*({_NAME})\s*$")
_FLIP = {"<=": ">=", ">=": "<=", "<": ">", ">": "<"}

ConstraintFn = Callable[[Mapping[str, float]], float]


@dataclass(frozen=True)
class Constraint:
    """``metric OP bound``; ``metric`` is None for a callable constraint."""

    text: str
    metric: str | None
    op: str
    bound: float
    fn: ConstraintFn | None = None

    def violation(self, metrics: Mapping[str, float]) -> float:
        """<= 0 when satisfied; for strict inequalities, equality counts as a violation."""
        if self.fn is not None:
            return float(self.fn(metrics))
        assert self.metric is not None
        value = float(metrics[self.metric])
        if math.isnan(value):
            return math.inf
        excess = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if self.op in ("<", ">") and excess == 0:
            return math.ulp(max(abs(self.bound), 1.0))
        return excess


def parse_constraint(spec: str | ConstraintFn) -> Constraint:
    """A :class:`Constraint` from a string or a callable ``metrics -> violation``."""
    if callable(spec):
        return Constraint(getattr(spec, "__name__", "callable"), None, "fn", 0.0, spec)
    if not isinstance(spec, str):
        raise UserTypeError(f"a constraint is a string or a callable, got {spec!r}")
    match = _METRIC_FIRST.match(spec)
    if match:
        name, op, number = match.groups()
    else:
        match = _NUMBER_FIRST.match(spec)
        if not match:
            raise UserError(
                f"cannot parse constraint {spec!r}; write it as 'metric <= number' "
                f"(operators <=, <, >=, >), e.g. 'latency_ms <= 5'"
            )
        number, op, name = match.groups()
        op = _FLIP[op]
    return Constraint(spec.strip(), name, op, float(number))


def parse_constraints(
    specs: Sequence[str | ConstraintFn] | None, known_metrics: Collection[str]
) -> list[Constraint]:
    """Parse every constraint and check that string ones name a known metric."""
    constraints = [parse_constraint(s) for s in specs or []]
    for c in constraints:
        if c.metric is not None and c.metric not in known_metrics:
            raise UserError(
                f"constraint {c.text!r} names unknown metric {c.metric!r}; "
                f"known metrics: {sorted(known_metrics)}"
            )
    return constraints


def total_violation(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> float:
    """Sum of the positive violations: 0 exactly when every constraint holds."""
    return float(sum(max(c.violation(metrics), 0.0) for c in constraints))
