"""``onefit.search``: the search loop over any space, with a resumable store.

Example:
    >>> import onefit
    >>> space = onefit.SearchSpace({"e0": ["conv3", "skip"], "e1": [1, 2, 3]})
    >>> def evaluate(config):
    ...     return {"accuracy": config["e1"] * (2 if config["e0"] == "conv3" else 1)}
    >>> result = onefit.run_search(space, evaluate, objectives={"accuracy": "max", "cost": "min"},
    ...                            cheap={"cost": lambda c: c["e1"]}, strategy="grid", budget=6,
    ...                            progress=False)
    >>> len(result.history), sorted((p.config["e1"], p.metrics["accuracy"]) for p in result.pareto)
    (6, [(1, 2.0), (2, 4.0), (3, 6.0)])
"""

from __future__ import annotations

import math
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from onefit.errors import MissingDependencyError, UserError
from onefit.search.constraints import ConstraintFn, parse_constraints
from onefit.search.pareto import normalized_hypervolume, pareto_mask
from onefit.search.plot import plot_front
from onefit.search.store import Evaluation, ResultStore, SearchOrigin
from onefit.search.strategies.base import (
    CheapFn,
    Problem,
    SearchStrategy,
    create_search_strategy,
)
from onefit.space import ArchConfig, SearchSpace

EvaluateFn = Callable[[ArchConfig], Mapping[str, float]]


@dataclass
class SearchResult:
    """What a search found: every evaluation in order, the feasible Pareto set, its HV."""

    history: list[Evaluation]
    pareto: list[Evaluation]
    hypervolume: float
    objectives: dict[str, str]
    store: Path | None
    # Wall seconds of this call, seconds spent inside evaluate, ask/evaluate rounds, and
    # proposals the strategy repeated (dropped before evaluation; 0 for every built-in one).
    timings: dict[str, float] = field(default_factory=dict)

    def plot(self, path: str | Path, x: str | None = None, y: str | None = None) -> Path:
        """Save a scatter plot of all evaluations with the Pareto front highlighted."""
        return plot_front(self.history, self.pareto, self.objectives, path, x, y,
                          title=f"hypervolume {self.hypervolume:.4f}")  # fmt: skip


def _evaluate_one(
    evaluate: EvaluateFn, config: ArchConfig
) -> tuple[dict[str, float] | None, str | None, float]:
    """Run the user's evaluator; any exception becomes a failure reason, not a crash."""
    start = time.perf_counter()
    try:
        metrics = {str(k): float(v) for k, v in dict(evaluate(config)).items()}
    except Exception as error:  # the evaluator is user code: record, then go on
        last = traceback.extract_tb(error.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        reason = f"evaluator raised {type(error).__name__}: {error}{where}"
        return None, reason, time.perf_counter() - start
    return metrics, None, time.perf_counter() - start


_WORKER_EVALUATE: EvaluateFn | None = None


def _init_worker(evaluate: EvaluateFn) -> None:
    # Under fork the function is inherited, not pickled: closures and lambdas work too.
    global _WORKER_EVALUATE
    _WORKER_EVALUATE = evaluate


def _evaluate_in_worker(config: ArchConfig) -> tuple[dict[str, float] | None, str | None, float]:
    assert _WORKER_EVALUATE is not None
    return _evaluate_one(_WORKER_EVALUATE, config)


class _Evaluator:
    """Evaluates batches serially, in local processes, or on a Ray cluster."""

    def __init__(self, evaluate: EvaluateFn, workers: int, executor: str | None,
                 ray_address: str | None) -> None:  # fmt: skip
        self.evaluate = evaluate
        self.pool: Executor | None = None
        self.ray: Any = None
        self.started_ray = False
        if executor == "ray":
            self._start_ray(ray_address, workers)
        elif executor not in (None, "local"):
            raise UserError(f"unknown executor {executor!r}; use None/'local' or 'ray'")
        elif workers > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_init_worker,
                initargs=(evaluate,),
            )

    def _start_ray(self, address: str | None, workers: int) -> None:
        try:
            import ray
        except ImportError:
            raise MissingDependencyError(
                'executor="ray" needs Ray: pip install "ray[default]"'
            ) from None
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            ray.init(address=address, num_cpus=None if address else max(workers, 1),
                     include_dashboard=False, log_to_driver=False)  # fmt: skip
        self.ray = ray
        self.remote = ray.remote(_evaluate_one)

    def map(self, configs: Sequence[ArchConfig]) -> Iterator[tuple[ArchConfig, Any]]:
        """Yield (config, result) as each finishes (serial: in order)."""
        if self.ray is not None:
            refs = {self.remote.remote(self.evaluate, c): c for c in configs}
            pending = list(refs)
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                yield refs[done[0]], self.ray.get(done[0])
        elif self.pool is not None:
            futures = {self.pool.submit(_evaluate_in_worker, c): c for c in configs}
            for future in as_completed(futures):
                yield futures[future], future.result()
        else:
            for config in configs:
                yield config, _evaluate_one(self.evaluate, config)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        if self.started_ray:  # a local instance this search started; a cluster stays up
            self.ray.shutdown()


def _check_objectives(objectives: Mapping[str, str]) -> dict[str, str]:
    if not objectives:
        raise UserError('give at least one objective, e.g. objectives={"accuracy": "max"}')
    for name, sense in objectives.items():
        if sense not in ("min", "max"):
            raise UserError(f"objective {name!r}: sense must be 'min' or 'max', got {sense!r}")
    return dict(objectives)


def _finite_or_reason(metrics: dict[str, float], required: Sequence[str]) -> str | None:
    missing = [m for m in required if m not in metrics]
    if missing:
        return f"evaluator returned no {missing} (it returned {sorted(metrics)})"
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        return f"evaluator returned non-finite values {bad}"
    return None


@contextmanager
def _progress(enabled: bool, budget: int, done: int) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda count: None
        return
    with Progress(transient=False) as bar:
        task = bar.add_task("searching", total=budget, completed=done)
        yield lambda count: bar.update(task, completed=count)


def search(
    space: SearchSpace,
    evaluate: EvaluateFn,
    objectives: Mapping[str, str],
    *,
    cheap: Mapping[str, CheapFn] | None = None,
    constraints: Sequence[str | ConstraintFn] | None = None,
    metrics: Sequence[str] = (),
    metric_kinds: Mapping[str, str] | None = None,
    metric_profiles: Mapping[str, Mapping[str, Any]] | None = None,
    strategy: str | SearchStrategy = "linas",
    strategy_kwargs: Mapping[str, Any] | None = None,
    budget: int = 100,
    batch_size: int = 5,
    seed: int = 0,
    store: str | Path | None = None,
    run_name: str = "search",
    workers: int = 1,
    executor: str | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    origin: SearchOrigin | None = None,
) -> SearchResult:
    """Search ``space`` for the Pareto set of ``objectives`` within ``budget`` evaluations.

    Args:
        space: any :class:`SearchSpace`.
        evaluate: the expensive call, ``config -> {metric: value}``.
        objectives: metric name -> ``"min"`` or ``"max"``.
        cheap: metric name -> exact function of a config, computed for every
            candidate without spending budget (e.g. analytic MACs).
        constraints: strings like ``"latency_ms <= 5"`` or callables ``metrics ->
            violation`` (<= 0 when feasible).
        metrics: names of further metrics ``evaluate`` returns, so constraints may use them.
        metric_kinds, metric_profiles: how the store labels a metric (``measured``,
            ``predicted``, ``cheap``; default ``cheap`` for cheap metrics, else
            ``measured``) and the device profile it was measured under.
        strategy: a registered name (``random``, ``grid``, ``nsga2``, ``linas``,
            ``sorted``) or a :class:`SearchStrategy` instance.
        budget: distinct configs passed to ``evaluate`` (failures count); never one twice.
        batch_size: configs asked of the strategy at a time (evaluated in parallel).
        store: SQLite file; a search restarted with the same store and ``run_name``
            continues where it stopped. Default: in memory.
        workers: local processes evaluating a batch; ``executor="ray"`` uses Ray instead
            (``ray_address`` of a cluster, or a local instance with ``workers`` CPUs).
        origin: the training run and weights the configs are evaluated on, recorded in
            the store (and checked on resume), so results read back as a run's search
            are known to be that run's (:func:`onefit.search.supernet.search_run` sets it).

    An evaluator that raises or returns NaN/inf is recorded as a failure with the
    reason, and the search goes on.
    """
    objectives = _check_objectives(objectives)
    cheap = dict(cheap or {})
    known = set(objectives) | set(cheap) | set(metrics)
    parsed = parse_constraints(constraints, known)
    for name in ("budget", "batch_size", "workers"):
        value = locals()[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    problem = Problem(space, objectives, parsed, cheap, budget, seed)
    if isinstance(strategy, SearchStrategy):
        searcher = strategy
    else:
        searcher = create_search_strategy(strategy, **dict(strategy_kwargs or {}))
    searcher.setup(problem)

    kinds = {**{n: "cheap" for n in cheap}, **dict(metric_kinds or {})}
    # Part of the run's settings: a resumed run must measure on the same device profile.
    profiles = {k: dict(v) for k, v in (metric_profiles or {}).items()}
    results = ResultStore(store if store is not None else ":memory:")
    settings = {"space": space.to_dict(), "objectives": objectives, "cheap": sorted(cheap),
                "constraints": [c.text for c in parsed], "strategy": searcher.describe(),
                "seed": seed, "metrics": sorted(metrics), "metric_kinds": kinds,
                "metric_profiles": profiles}  # fmt: skip
    # The budget is not a setting: a finished search can be resumed with a larger one.
    try:
        run = results.open_run(run_name, settings)
        if origin is not None:
            results.bind_origin(run_name, origin)
    except BaseException:
        results.close()
        raise
    history = results.history(run)
    if history:
        searcher.tell(history)
    seen = {e.config for e in history}
    required = [m for m in objectives if m not in cheap]
    required += [c.metric for c in parsed if c.metric and c.metric not in cheap]
    evaluator = _Evaluator(evaluate, workers, executor, ray_address)
    started, evaluate_seconds, rounds, repeated = time.perf_counter(), 0.0, 0, 0
    try:
        with _progress(progress, budget, len(history)) as advance:
            while len(history) < budget:
                proposed = list(searcher.ask(min(batch_size, budget - len(history)), set(seen)))
                batch = [
                    c for c in dict.fromkeys(space.validate(c) for c in proposed) if c not in seen
                ]
                repeated += len(proposed) - len(batch)  # a strategy bug if ever > 0
                if not batch:
                    break  # the strategy has nothing new: the space or its chain is exhausted
                seen.update(batch)
                rounds += 1
                finished = []
                for config, (values, reason, seconds) in evaluator.map(batch):
                    evaluate_seconds += seconds
                    if values is not None:
                        try:
                            values = {**values, **problem.cheap_metrics(config)}
                            reason = _finite_or_reason(values, required)
                        except Exception as error:  # user code too: record and go on
                            reason = f"a cheap metric raised {type(error).__name__}: {error}"
                    if reason is None and values is not None:
                        violation = problem.violation(values)
                        results.record(run, config, values, kinds=kinds, profiles=profiles,
                                       seconds=seconds, violation=violation)  # fmt: skip
                        evaluation = Evaluation(
                            len(history), config, "ok", values, None, seconds, violation
                        )
                    else:
                        reason = reason or "unknown"
                        results.record_failure(run, config, reason, seconds)
                        evaluation = Evaluation(len(history), config, "failed", {}, reason, seconds)
                    history.append(evaluation)
                    finished.append(evaluation)
                    advance(len(history))
                searcher.tell(finished)
    finally:
        evaluator.close()
        results.close()
    result = summarize(problem, history, Path(store) if store is not None else None)
    result.timings = {"wall_seconds": time.perf_counter() - started,
                      "evaluate_seconds": evaluate_seconds, "rounds": rounds,
                      "repeated_proposals": repeated}  # fmt: skip
    return result


def summarize(problem: Problem, history: list[Evaluation], store: Path | None) -> SearchResult:
    """The feasible Pareto set of ``history`` and its hypervolume.

    Hypervolume is normalized with the bounds of the feasible evaluations (each
    objective scaled to [0, 1], reference point 1 at the worst observed values), so it
    compares snapshots of one search; to compare searches, use fixed bounds with
    :func:`onefit.search.pareto.normalized_hypervolume`.
    """
    feasible = [e for e in history if e.ok and problem.violation(e.metrics) <= 0]
    if not feasible:
        return SearchResult(history, [], 0.0, problem.objectives, store)
    points = problem.minimization([e.metrics for e in feasible])
    mask = pareto_mask(points)
    pareto = [e for e, keep in zip(feasible, mask) if keep]
    lower, upper = points.min(axis=0), points.max(axis=0)
    hv = normalized_hypervolume(points[mask], lower, upper) if len(points) > 1 else 0.0
    return SearchResult(history, pareto, float(hv), problem.objectives, store)


__all__ = ["SearchResult", "search", "summarize"]
