"""Search: the strategy conformance suite, Pareto/hypervolume against brute force,
constraints, failures, the store, parallel evaluation and plots."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import onefit
from onefit.search import (
    ResultStore,
    StoreError,
    hypervolume,
    list_search_strategies,
    normalized_hypervolume,
    pareto_mask,
    parse_constraint,
)

SPACE = onefit.SearchSpace({"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3], "c": ["x", "y", "z"]})
OBJECTIVE_SETS = {
    1: {"accuracy": "max"},
    2: {"accuracy": "max", "latency": "min"},
    3: {"accuracy": "max", "latency": "min", "memory": "min"},
}


def synthetic(config) -> dict[str, float]:
    a, b, c = config["a"], config["b"], "xyz".index(config["c"])
    return {
        "accuracy": 50 + 8 * a + 5 * b - 3 * (c - 1) ** 2 - 0.5 * a * b,
        "latency": 1 + a**1.5 + 2 * b + 0.5 * c,
        "memory": 10 + 3 * b + 4 * c,
    }


class CountingEvaluator:
    def __init__(self) -> None:
        self.calls: list[onefit.ArchConfig] = []

    def __call__(self, config):
        self.calls.append(config)
        return synthetic(config)


def run(strategy, objectives, constraints=(), budget=20, seed=0, **kwargs):
    evaluate = CountingEvaluator()
    result = onefit.run_search(SPACE, evaluate, objectives, constraints=list(constraints),
                           metrics=["accuracy", "latency", "memory"], strategy=strategy,
                           budget=budget, seed=seed, progress=False, **kwargs)  # fmt: skip
    return result, evaluate.calls


# -- conformance suite, parametrized over every registered strategy --------------------------
@pytest.mark.parametrize("strategy", list_search_strategies())
@pytest.mark.parametrize("n_objectives", [1, 2, 3])
def test_strategy_respects_budget_never_repeats_and_is_reproducible(strategy, n_objectives):
    objectives = OBJECTIVE_SETS[n_objectives]
    result, calls = run(strategy, objectives, budget=20)
    assert len(result.history) == len(calls) <= 20
    if strategy != "sorted":  # sorted evaluates its nested chain only
        assert len(calls) == 20
    assert len(set(calls)) == len(calls)
    assert result.timings["repeated_proposals"] == 0  # every proposal was new
    assert [e.config for e in result.history] == calls
    again, _ = run(strategy, objectives, budget=20)
    assert [e.config for e in again.history] == calls
    assert result.pareto, "a search with successful evaluations has a Pareto set"
    points = np.array([[-e.metrics["accuracy"], *(e.metrics[m] for m in list(objectives)[1:])]
                       for e in result.history])  # fmt: skip
    on_front = {e.config for e, keep in zip(result.history, pareto_mask(points)) if keep}
    assert {e.config for e in result.pareto} == on_front


@pytest.mark.parametrize("strategy", list_search_strategies())
def test_strategy_pareto_set_satisfies_constraints(strategy):
    constraints = ["latency <= 8", lambda m: m["memory"] - 19]  # memory <= 19
    result, calls = run(strategy, OBJECTIVE_SETS[2], constraints, budget=25)
    assert len(set(calls)) == len(calls) <= 25
    assert result.pareto
    for e in result.pareto:
        assert e.metrics["latency"] <= 8 and e.metrics["memory"] <= 19
    feasible = [
        e for e in result.history if e.metrics["latency"] <= 8 and e.metrics["memory"] <= 19
    ]
    best = max(e.metrics["accuracy"] for e in feasible)
    assert max(e.metrics["accuracy"] for e in result.pareto) == best


def test_different_seeds_explore_differently():
    first, _ = run("random", OBJECTIVE_SETS[2], seed=0)
    second, _ = run("random", OBJECTIVE_SETS[2], seed=1)
    assert [e.config for e in first.history] != [e.config for e in second.history]


def test_grid_covers_a_small_space_then_stops():
    _result, calls = run("grid", OBJECTIVE_SETS[2], budget=100)
    assert len(calls) == SPACE.size == 60 and set(calls) == set(SPACE)


def test_linas_finds_the_true_front_of_a_small_space_with_few_evaluations():
    everything, _ = run("grid", OBJECTIVE_SETS[2], budget=60)
    truth = {e.config for e in everything.pareto}
    result, _ = run("linas", OBJECTIVE_SETS[2], budget=30, strategy_kwargs={"initial": 6})
    found = {e.config for e in result.pareto}
    assert len(found & truth) >= 0.8 * len(truth), (len(found & truth), len(truth))


# -- Pareto sets and hypervolume against brute force ------------------------------------------
def brute_force_pareto(points: np.ndarray) -> np.ndarray:
    n = len(points)
    return np.array([
        not any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i])
                for j in range(n) if j != i)
        for i in range(n)
    ])  # fmt: skip


def brute_force_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Sum the cells of the grid of all coordinates that some point dominates."""
    axes = [np.unique(np.append(points[:, d], reference[d])) for d in range(points.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = np.array([axes[d][i] for d, i in enumerate(cell)])
        high = np.array([axes[d][i + 1] for d, i in enumerate(cell)])
        if np.any(np.all(points <= low, axis=1)):
            volume += float(np.prod(high - low))
    return volume


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_pareto_and_hypervolume_match_brute_force(dims, seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(12, dims)).astype(float)  # ties and duplicates on purpose
    assert pareto_mask(points).tolist() == brute_force_pareto(points).tolist()
    reference = np.full(dims, 6.0)
    assert hypervolume(points, reference) == pytest.approx(
        brute_force_hypervolume(points, reference)
    )


def test_normalized_hypervolume_of_the_ideal_point_is_one():
    lower, upper = np.array([0.0, 10.0]), np.array([1.0, 20.0])
    assert normalized_hypervolume(np.array([[0.0, 10.0]]), lower, upper) == pytest.approx(1.0)
    assert normalized_hypervolume(np.array([[0.5, 15.0]]), lower, upper) == pytest.approx(0.25)


# -- constraints ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "metrics", "holds"),
    [
        ("macs <= 300e6", {"macs": 300e6}, True),
        ("macs < 300e6", {"macs": 300e6}, False),
        ("latency_ms >= 1.5", {"latency_ms": 1.0}, False),
        ("5 > latency_ms", {"latency_ms": 4.9}, True),
        ("accuracy>0.9", {"accuracy": 0.95}, True),
    ],
)
def test_constraint_strings(text, metrics, holds):
    assert (parse_constraint(text).violation(metrics) <= 0) is holds


@pytest.mark.parametrize(
    "text", ["macs", "macs <= ", "macs == 3", "__import__('os').system('true') <= 1", "a <= b"]
)
def test_bad_constraint_strings_are_rejected_without_eval(text):
    with pytest.raises(ValueError, match="cannot parse constraint"):
        parse_constraint(text)


def test_unknown_metric_in_a_constraint_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'flops'; known metrics: \['accuracy'"):
        onefit.run_search(SPACE, synthetic, {"accuracy": "max"}, constraints=["flops <= 3"],
                      progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objectives": {}}, "at least one objective"),
        ({"objectives": {"accuracy": "up"}}, "sense must be 'min' or 'max'"),
        ({"budget": 0}, "budget must be a positive integer"),
        ({"strategy": "bayes"}, "unknown search strategy 'bayes'; known: grid, linas"),
    ],
)
def test_bad_search_arguments(kwargs, message):
    args = {"objectives": {"accuracy": "max"}, **kwargs}
    with pytest.raises(ValueError, match=message):
        onefit.run_search(SPACE, synthetic, progress=False, **args)


# -- failures ---------------------------------------------------------------------------------
def test_raising_or_non_finite_evaluations_are_recorded_as_failures(tmp_path):
    def flaky(config):
        if config["a"] == 1:
            raise RuntimeError("out of memory")
        if config["a"] == 2:
            return {"accuracy": float("nan")}
        if config["a"] == 3:
            return {"speed": 1.0}
        return synthetic(config)

    store = tmp_path / "r.db"
    result = onefit.run_search(SPACE, flaky, {"accuracy": "max"}, strategy="grid", budget=60,
                           store=store, progress=False)  # fmt: skip
    failed = [e for e in result.history if not e.ok]
    assert len(result.history) == 60 and len(failed) == 36
    reasons = {e.config["a"]: e.reason for e in failed}
    assert "evaluator raised RuntimeError: out of memory" in reasons[1]
    assert "non-finite" in reasons[2]
    assert "returned no ['accuracy']" in reasons[3]
    assert all(e.config["a"] in (0, 4) for e in result.pareto)
    with ResultStore(store) as db:
        assert len([e for e in db.history(1) if not e.ok]) == 36


# -- the store --------------------------------------------------------------------------------
def test_resume_continues_without_repeating(tmp_path):
    store = tmp_path / "r.db"
    first = CountingEvaluator()
    objectives = OBJECTIVE_SETS[2]
    onefit.run_search(SPACE, first, objectives, strategy="random", budget=8, store=store,
                  progress=False)  # fmt: skip
    # Resumed with the same settings: nothing left to do.
    second = CountingEvaluator()
    result = onefit.run_search(SPACE, second, objectives, strategy="random", budget=8, store=store,
                           progress=False)  # fmt: skip
    assert second.calls == [] and len(result.history) == 8
    # Resumed with a larger budget: only the extra configs are evaluated.
    third = CountingEvaluator()
    result = onefit.run_search(SPACE, third, objectives, strategy="random", budget=12, store=store,
                           progress=False)  # fmt: skip
    assert len(third.calls) == 4 and len(result.history) == 12
    assert not set(third.calls) & set(first.calls)
    with pytest.raises(StoreError, match=r"exists with other settings \(\['seed'\]\)"):
        onefit.run_search(SPACE, third, objectives, strategy="random", budget=12, store=store,
                      seed=1, progress=False)  # fmt: skip


def test_nsga2_resumes_after_many_generations(tmp_path):
    space = onefit.SearchSpace({f"x{i}": list(range(6)) for i in range(4)})

    def evaluate(config):
        x = [config[f"x{i}"] for i in range(4)]
        return {"f1": sum(x), "f2": sum((5 - v) ** 2 for v in x)}

    kwargs = {"strategy": "nsga2", "strategy_kwargs": {"population": 4}, "store": tmp_path / "n.db",
              "progress": False}  # fmt: skip
    onefit.run_search(space, evaluate, {"f1": "min", "f2": "min"}, budget=200, **kwargs)
    calls = []

    def counted(config):
        calls.append(config)
        return evaluate(config)

    result = onefit.run_search(space, counted, {"f1": "min", "f2": "min"}, budget=240, **kwargs)
    assert len(calls) == 40 and len(result.history) == 240
    assert len({e.config for e in result.history}) == 240


def test_a_cheap_metric_that_raises_fails_that_config_only():
    def cost(config):
        if config["a"] == 0:
            raise KeyError("unit not in the table")
        return float(config["a"])

    objectives = {"accuracy": "max", "cost": "min"}
    result = onefit.run_search(SPACE, synthetic, objectives, cheap={"cost": cost}, strategy="grid",
                           budget=60, progress=False)  # fmt: skip
    failed = [e for e in result.history if not e.ok]
    assert len(failed) == 12 and all(e.config["a"] == 0 for e in failed)
    assert "a cheap metric raised KeyError" in failed[0].reason


def test_store_export_and_plain_json(tmp_path):
    store = tmp_path / "r.db"
    onefit.run_search(SPACE, synthetic, OBJECTIVE_SETS[2], strategy="random", budget=6,
                  store=store, progress=False, metrics=["memory"])  # fmt: skip
    with ResultStore(store) as db:
        csv_path = db.export_csv(tmp_path / "r.csv", 1)
        rows = db.measurement_rows(1)
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[:4] == ["index", "a", "b", "c"] and len(lines) == 7
    assert {r["kind"] for r in rows} == {"measured"}
    assert all(r["config"].startswith("{") for r in rows)  # canonical JSON, not a repr
    import sqlite3

    db = sqlite3.connect(store)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "configs", "evaluations", "measurements", "failures"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a onefit results store"):
        ResultStore(bad)


# -- parallel evaluation and plots ------------------------------------------------------------
def test_two_worker_processes_evaluate_the_same_configs_as_one(tmp_path):
    offset = 3.0  # a closure: works because workers are forked

    def evaluate(config):
        return {k: v + offset for k, v in synthetic(config).items()}

    serial = onefit.run_search(SPACE, evaluate, OBJECTIVE_SETS[2], strategy="random", budget=12,
                           progress=False)  # fmt: skip
    parallel = onefit.run_search(SPACE, evaluate, OBJECTIVE_SETS[2], strategy="random", budget=12,
                             workers=2, batch_size=4, progress=False)  # fmt: skip
    assert {e.config for e in serial.history} == {e.config for e in parallel.history}
    by_config = {e.config: e.metrics for e in serial.history}
    assert all(by_config[e.config] == e.metrics for e in parallel.history)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    result, _ = run("random", OBJECTIVE_SETS[2], budget=15)
    path = result.plot(tmp_path / "front.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.hypervolume > 0 and math.isfinite(result.hypervolume)


def test_ray_executor_on_a_local_two_cpu_instance(tmp_path):
    pytest.importorskip("ray")
    offset = 1.0  # a closure: Ray pickles it with cloudpickle

    def evaluate(config):
        if config["a"] == 4:
            raise ValueError("unsupported")
        return {k: v + offset for k, v in synthetic(config).items()}

    store = tmp_path / "ray.db"
    result = onefit.run_search(SPACE, evaluate, OBJECTIVE_SETS[2], strategy="random", budget=10,
                           executor="ray", workers=2, batch_size=5, store=store,
                           progress=False)  # fmt: skip
    serial = onefit.run_search(SPACE, evaluate, OBJECTIVE_SETS[2], strategy="random", budget=10,
                           progress=False)  # fmt: skip
    assert {e.config for e in result.history} == {e.config for e in serial.history}
    by_config = {e.config: e for e in serial.history}
    for e in result.history:
        assert e.status == by_config[e.config].status and e.metrics == by_config[e.config].metrics
    assert any("unsupported" in (e.reason or "") for e in result.history)
    with ResultStore(store) as db:  # only the driver wrote the store
        assert len(db.history(db.run_id("search"))) == 10


def test_ray_not_installed_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install \"ray\[default\]\""):
        onefit.run_search(SPACE, synthetic, OBJECTIVE_SETS[1], executor="ray", progress=False)
