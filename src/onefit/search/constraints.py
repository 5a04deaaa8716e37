"""Constraints on metrics: strings like ``"latency_ms <= 5"`` or callables.

A constraint's *violation* is a number that is <= 0 when the constraint holds and grows
with how far it is broken, so strategies can prefer "less infeasible" configs.

Strings are parsed by a small grammar, never ``eval``: ``NAME OP NUMBER`` or
``NUMBER OP NAME`` with OP one of ``<= < >= >``. The number is a finite ASCII decimal
(``300e6``, ``0.5``), optionally followed by a suffix:

* ``k``, ``M``, ``G``, ``T``: thousands, millions, billions, trillions (``macs < 300M``);
* a time unit ``us``, ``ms`` or ``s`` for a metric measured in milliseconds (a name
  ending in ``_ms``): the bound is converted to milliseconds (``latency_ms <= 0.02s``
  is ``latency_ms <= 20``);
* a size ``B``, ``kB``/``KB``, ``MB``, ``GB`` (powers of 1000) or ``KiB``, ``MiB``,
  ``GiB`` (powers of 1024) for a metric in bytes (a name ending in ``_bytes``).

A cost (a latency, a size, ``macs``, ``params``, ``flops``) cannot be negative, so a
negative bound on one is an error; anything else (an empty string, an unknown
operator or suffix, NaN or infinity, trailing text) is an error naming the string and
the accepted forms.

Example:
    >>> c = parse_constraint("macs <= 300e6")
    >>> c.metric, c.violation({"macs": 250e6}) <= 0, c.violation({"macs": 310e6}) > 0
    ('macs', True, True)
    >>> parse_constraint("10 > latency_ms").violation({"latency_ms": 12.0})
    2.0
    >>> parse_constraint("macs<300M").bound, parse_constraint("latency_ms <= 0.02s").bound
    (300000000.0, 20.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from onefit.errors import UserError, UserTypeError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SUFFIX = r"[A-Za-z]*"
_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_OP = r"<=|>=|<|>"
# re.ASCII: \d and \s are ASCII only (float() would read other scripts' digits).
_METRIC_FIRST = re.compile(rf"^\s*({_NAME})\s*({_OP})\s*({_NUMBER})\s*({_SUFFIX})\s*$", re.ASCII)
_NUMBER_FIRST = re.compile(rf"^\s*({_NUMBER})\s*({_SUFFIX})\s*({_OP})\s*({_NAME})\s*$", re.ASCII)
# NaN or infinity written where the bound goes, either side of the operator.
_NON_FINITE = re.compile(
    r"(?:<=|>=|<|>)\s*[-+]?(?:nan|inf(?:inity)?)\s*$|^\s*[-+]?(?:nan|inf(?:inity)?)\s*(?:<|>)",
    re.IGNORECASE,
)
_FLIP = {"<=": ">=", ">=": "<=", "<": ">", ">": "<"}
# Constraint strings longer than this are refused (a constraint is a few words).
MAX_LENGTH = 200
MAGNITUDES = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}  # to milliseconds
SIZE_UNITS = {"B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
              "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40}  # fmt: skip
# Metrics that cannot be negative (besides names ending in _ms or _bytes).
COST_NAMES = ("macs", "params", "flops")
FORMS = (
    "'metric <= number' or 'number >= metric' (operators <=, <, >=, >), the number "
    "finite and optionally followed by k, M, G or T, by us, ms or s for a metric in "
    "milliseconds, or by B, kB, MB, GB, KiB, MiB or GiB for a metric in bytes; "
    "e.g. 'latency_ms <= 5', 'macs < 300M', 'peak_memory_bytes <= 64MiB'"
)

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


def _shown(spec: str) -> str:
    return repr(spec) if len(spec) <= 80 else repr(spec[:80]) + f"... ({len(spec)} characters)"


def _scale(spec: str, name: str, suffix: str) -> float:
    """The factor a number's suffix stands for, given the metric it bounds."""
    if not suffix:
        return 1.0
    if suffix in MAGNITUDES:
        return MAGNITUDES[suffix]
    if name.endswith("_ms") and suffix in TIME_UNITS:
        return TIME_UNITS[suffix]
    if name.endswith("_bytes") and suffix in SIZE_UNITS:
        return SIZE_UNITS[suffix]
    if suffix in TIME_UNITS or suffix in SIZE_UNITS:
        measured = "milliseconds (_ms)" if suffix in TIME_UNITS else "bytes (_bytes)"
        raise UserError(
            f"constraint {_shown(spec)}: the unit {suffix!r} is for a metric in {measured}, "
            f"and {name!r} is not one; write {FORMS}"
        )
    raise UserError(f"constraint {_shown(spec)}: unknown unit or suffix {suffix!r}; write {FORMS}")


def is_cost_metric(name: str) -> bool:
    """Whether metric ``name`` is a cost that cannot be negative (time, size, count)."""
    return name.endswith(("_ms", "_bytes")) or name in COST_NAMES


def parse_constraint(spec: str | ConstraintFn) -> Constraint:
    """A :class:`Constraint` from a string or a callable ``metrics -> violation``.

    Raises :class:`~onefit.errors.UserError` naming the string and the accepted forms
    when it is not one (see the module docstring).

    Example:
        >>> parse_constraint("macs <= 5 apples")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        onefit.errors.UserError: constraint 'macs <= 5 apples': unknown unit or suffix 'apples'; ...
    """
    if callable(spec):
        return Constraint(getattr(spec, "__name__", "callable"), None, "fn", 0.0, spec)
    if not isinstance(spec, str):
        raise UserTypeError(f"a constraint is a string or a callable, got {spec!r}")
    if len(spec) > MAX_LENGTH:
        raise UserError(
            f"constraint {_shown(spec)} is too long (at most {MAX_LENGTH} characters); "
            f"write {FORMS}"
        )
    match = _METRIC_FIRST.match(spec)
    if match:
        name, op, number, suffix = match.groups()
    else:
        match = _NUMBER_FIRST.match(spec)
        if not match:
            if _NON_FINITE.search(spec):
                raise UserError(
                    f"constraint {_shown(spec)}: the bound must be a finite number; write {FORMS}"
                )
            raise UserError(f"cannot parse constraint {_shown(spec)}; write it as {FORMS}")
        number, suffix, op, name = match.groups()
        op = _FLIP[op]
    bound = float(number) * _scale(spec, name, suffix)
    if not math.isfinite(bound):
        raise UserError(
            f"constraint {_shown(spec)}: the bound {number}{suffix} is not a finite number "
            f"(it overflows); write {FORMS}"
        )
    if bound < 0 and is_cost_metric(name):
        raise UserError(
            f"constraint {_shown(spec)}: {name!r} cannot be negative, so a bound of "
            f"{number}{suffix} makes no sense"
        )
    return Constraint(spec.strip(), name, op, bound)


def parse_constraints(
    specs: Sequence[str | ConstraintFn] | None, known_metrics: Collection[str]
) -> list[Constraint]:
    """Parse every constraint and check that string ones name a known metric."""
    if specs is not None and not isinstance(specs, (list, tuple)):
        what = f"the string {specs!r}" if isinstance(specs, str) else repr(specs)
        raise UserTypeError(f"constraints are a list of strings or callables, got {what}")
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
