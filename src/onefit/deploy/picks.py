"""Choosing sub-networks from a run's search results.

A *pick* is one of:

- ``"most-accurate"``: the Pareto sub-network with the best quality metric (accuracy,
  or the first other objective that is not a cost, e.g. ``mse`` of a regression task);
- ``"smallest"``: the one with the lowest cost (the search's cost objective);
- ``"knee"``: the Pareto point farthest above the straight line between those two
  (objectives normalized), where giving up accuracy starts to buy little cost (with
  only two Pareto points, the more accurate one);
- a constraint string such as ``"latency_ms <= 5"`` (several joined by ``and``): the
  most accurate Pareto sub-network that satisfies it;
- a config: a mapping or its JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onefit.errors import UserError
from onefit.rundir import DEFAULT_SEARCH, RunDir, RunDirError
from onefit.search.constraints import Constraint, parse_constraint
from onefit.search.pareto import pareto_mask, to_minimization
from onefit.search.runner import SearchResult
from onefit.search.store import Evaluation, ResultStore, SearchOrigin, StoreError
from onefit.space import strict_json

NAMED_PICKS = ("most-accurate", "smallest", "knee")
COST_METRICS = ("latency_ms", "measured_latency_ms", "peak_memory_bytes", "macs", "params")


class PickError(UserError):
    """No search results to pick from, or nothing satisfies the pick."""


@dataclass
class SearchRecord:
    """A finished search of a run: its evaluations, objectives and Pareto set."""

    history: list[Evaluation]
    objectives: dict[str, str]
    pareto: list[Evaluation]

    @property
    def cost(self) -> str:
        """The cost objective: the first minimized one that measures size or speed."""
        costs = [n for n in self.objectives if n in COST_METRICS and self.objectives[n] == "min"]
        return costs[0] if costs else "macs"

    @property
    def quality(self) -> str | None:
        """The quality objective: ``accuracy``, else the first objective that is no cost."""
        if "accuracy" in self.objectives:
            return "accuracy"
        return next((n for n in self.objectives if n not in COST_METRICS), None)

    def best(self, evaluations: list[Evaluation]) -> Evaluation:
        """The evaluation with the best quality metric (in its objective's direction)."""
        name = self.quality
        if name is None:
            raise PickError("the search has no quality objective (accuracy, mse, ...)")
        sign = 1.0 if self.objectives[name] == "max" else -1.0
        return max(evaluations, key=lambda e: sign * e.metrics[name])

    @classmethod
    def of(cls, result: SearchResult) -> SearchRecord:
        """The record of a search held in memory (``search_run`` without a store)."""
        return cls(list(result.history), dict(result.objectives), list(result.pareto))


def _feasible(evaluation: Evaluation, constraints: list[Constraint]) -> bool:
    """Feasible as the search judged it: its recorded violation, else (stores written
    before violations were kept) the constraint strings re-applied."""
    if not evaluation.ok:
        return False
    if evaluation.violation is not None:
        return evaluation.violation <= 0
    return all(c.violation(evaluation.metrics) <= 0 for c in constraints if c.metric)


def load_search(run_dir: str | Path, name: str = DEFAULT_SEARCH) -> SearchRecord:
    """Read search ``name`` of the run in ``run_dir`` and recompute its feasible Pareto set.

    No such search is a :class:`PickError`; a store that is damaged, not a onefit store,
    or made from another run or other weights (a copied file, a run trained further
    since) is a :class:`StoreError` naming the file and both ids.
    """
    try:
        path, run_name = RunDir(run_dir).find_search(name)
    except RunDirError as error:
        raise PickError(str(error)) from None
    origin = SearchOrigin.of_run(run_dir)
    with ResultStore(path, create=False) as store:
        try:
            run = store.run_id(run_name)
        except StoreError as error:
            raise PickError(str(error)) from None
        store.check_origin(run_name, origin)
        settings = store.settings(run)
        history = store.history(run)
    objectives = dict(settings.get("objectives") or {})
    constraints = []
    for text in settings.get("constraints", []):
        try:
            constraints.append(parse_constraint(text))
        except ValueError:  # a callable's name: its verdict is the recorded violation
            continue
    feasible = [e for e in history if _feasible(e, constraints)]
    if not feasible:
        return SearchRecord(history, objectives, [])
    mask = pareto_mask(to_minimization([e.metrics for e in feasible], objectives))
    return SearchRecord(history, objectives, [e for e, keep in zip(feasible, mask) if keep])


def _knee(record: SearchRecord) -> Evaluation:
    front = sorted(record.pareto, key=lambda e: e.metrics[record.cost])
    quality = record.quality or "accuracy"
    if len(front) <= 2:
        return record.best(front)
    # Quality as "higher is better", so the knee bulges the same way for every task.
    sign = 1.0 if record.objectives.get(quality) != "min" else -1.0
    points = np.array([[e.metrics[record.cost], sign * e.metrics[quality]] for e in front])
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high > low, high - low, 1.0)
    start, end = scaled[0], scaled[-1]
    direction = (end - start) / max(np.linalg.norm(end - start), 1e-12)
    offsets = scaled - start
    # Signed distance above the chord from the cheapest to the most costly point: the
    # knee bulges furthest towards "cheap and accurate".
    distance = offsets[:, 1] * direction[0] - offsets[:, 0] * direction[1]
    return front[int(np.argmax(distance))]


PICK_FORMS = (
    "most-accurate, smallest, knee, a constraint such as 'latency_ms <= 5' or "
    "'macs < 300M' (several joined by 'and'), or a config as a JSON object"
)


def parse_pick(choice: object) -> tuple[str, Any]:
    """What ``choice`` asks for: ``("config", dict)``, ``("named", name)`` or
    ``("constraints", [Constraint, ...])``; a :class:`PickError` naming the pick and
    the accepted forms when it is none of them.

    Example:
        >>> parse_pick(" knee ")
        ('named', 'knee')
        >>> kind, found = parse_pick("latency_ms <= 5 and macs < 300M")
        >>> kind, [(c.metric, c.bound) for c in found]
        ('constraints', [('latency_ms', 5.0), ('macs', 300000000.0)])
        >>> parse_pick('{"ks.0": 3}')
        ('config', {'ks.0': 3})
    """
    if isinstance(choice, Mapping):
        return "config", dict(choice)
    if not isinstance(choice, str):
        raise PickError(f"a pick is a string or a config mapping, got {choice!r}; use {PICK_FORMS}")
    text = choice.strip()
    shown = repr(choice) if len(choice) <= 80 else repr(choice[:80]) + "..."
    if not text:
        raise PickError(f"the pick is empty; use {PICK_FORMS}")
    if text.startswith("{"):
        try:
            data = strict_json(text, f"pick {shown}")
        except UserError as error:
            raise PickError(str(error)) from None
        if not isinstance(data, dict):  # pragma: no cover - '{' starts an object
            raise PickError(f"pick {shown} is not a JSON object; use {PICK_FORMS}")
        return "config", data
    if text in NAMED_PICKS:
        return "named", text
    parts = re.split(r"\s+and\s+", text)
    try:
        return "constraints", [parse_constraint(part) for part in parts]
    except UserError as error:
        raise PickError(f"pick {shown} is not one of {PICK_FORMS} ({error})") from None


def pick(record: SearchRecord, choice: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(label, config) for ``choice`` (see the module docstring)."""
    kind, parsed = parse_pick(choice)
    if kind == "config":
        return "config", parsed
    text = choice.strip() if isinstance(choice, str) else ""
    if not record.pareto:
        raise PickError("the search has no feasible sub-network to pick from")
    if record.quality is None and text in ("most-accurate", "knee"):
        raise PickError(
            f"pick {text!r} needs a quality objective (accuracy, mse, ...) in the search; "
            f"it searched {sorted(record.objectives)}"
        )
    if text == "most-accurate":
        best = record.best(record.pareto)
    elif text == "smallest":
        best = min(record.pareto, key=lambda e: e.metrics[record.cost])
    elif text == "knee":
        best = _knee(record)
    else:
        constraints = parsed
        for c in constraints:
            if c.metric not in record.pareto[0].metrics:
                raise PickError(
                    f"pick {text!r} names {c.metric!r}; the search recorded "
                    f"{sorted(record.pareto[0].metrics)}"
                )
        allowed = [
            e for e in record.pareto if all(c.violation(e.metrics) <= 0 for c in constraints)
        ]
        if not allowed:
            ranges = {c.metric: (min(e.metrics[c.metric] for e in record.pareto),
                                 max(e.metrics[c.metric] for e in record.pareto))
                      for c in constraints if c.metric}  # fmt: skip
            raise PickError(
                f"no Pareto sub-network satisfies {text!r}; the Pareto set spans {ranges}"
            )
        if record.quality is not None:
            best = record.best(allowed)
        else:
            best = min(allowed, key=lambda e: e.metrics[record.cost])
    return text, dict(best.config)
