"""Conformance and behaviour of the training strategies (no training needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import onefit
from onefit.space import SearchSpace
from onefit.training import TRAINING_STRATEGIES, create_strategy
from onefit.training.strategies import DelayedShrinking, ProgressiveShrinking, nested_configs
from onefit.training.trainer import cosine_schedule

SPACE = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=8).space


@pytest.mark.parametrize("name", TRAINING_STRATEGIES.names())
def test_every_strategy_is_deterministic_and_valid(name: str) -> None:
    strategy = create_strategy(name)
    strategy.setup(SPACE, total_steps=40)
    for step in range(40):
        a = strategy.tasks(step, np.random.default_rng([0, step]))
        b = strategy.tasks(step, np.random.default_rng([0, step]))
        assert a == b and a
        for task in a:
            assert SPACE.validate(task.config) == task.config
            assert task.target in ("labels", "teacher", "both") and task.weight >= 0
        assert strategy.lr_scale(step) > 0
    state = strategy.state_dict()
    torch.save(state, "/dev/null")  # plain data, loadable with weights_only
    assert strategy.describe()["name"] == name


def test_sandwich_trains_largest_on_labels_then_distils() -> None:
    strategy = create_strategy("sandwich", num_random=3)
    strategy.setup(SPACE, 10)
    tasks = strategy.tasks(0, np.random.default_rng(0))
    assert [t.target for t in tasks] == ["labels", "teacher", "teacher", "teacher", "teacher"]
    assert tasks[0].config == SPACE.largest() and tasks[0].teacher
    assert tasks[1].config == SPACE.smallest()
    assert len({t.config for t in tasks[2:]}) == 3


def test_deps_delays_shrinking_and_ramps_the_effective_lr() -> None:
    strategy = DelayedShrinking(shrink_start=0.5, ramp=0.2, multiplier=1.0)
    schedule = cosine_schedule(0.1, 100, 0)
    strategy.setup(SPACE, 100, schedule=schedule)  # the trainer passes its schedule
    # Full network only before 30 %.
    for step in range(30):
        tasks = strategy.tasks(step, np.random.default_rng(step))
        assert len(tasks) == 1 and tasks[0].config == SPACE.largest()
    # Students' effective learning rate rises linearly to lr(50) over steps 30..49.
    effective = [strategy.student_weight(s) * schedule(s) for s in range(30, 50)]
    target = schedule(50)
    np.testing.assert_allclose(effective, [target * (i + 1) / 20 for i in range(20)], rtol=1e-9)
    assert all(strategy.student_weight(s) == 1.0 for s in range(50, 100))
    assert len(strategy.tasks(60, np.random.default_rng(0))) == 4
    with pytest.raises(ValueError, match="ramp <= shrink_start"):
        DelayedShrinking(shrink_start=0.1, ramp=0.3)


def test_progressive_opens_kernel_then_depth_then_width() -> None:
    strategy = ProgressiveShrinking()
    strategy.setup(SPACE, 80)
    assert [p["open"] for p in strategy.resolved_phases] == [
        ["r"],
        ["r", "ks"],
        ["r", "ks", "d"],
        ["r", "ks", "d", "e"],
    ]
    assert strategy.frozen_teacher_step == 20

    def varied(step_range: range) -> set[str]:
        groups = set()
        for step in step_range:
            for task in strategy.tasks(step, np.random.default_rng(step)):
                groups |= {
                    n.split(".")[0] for n in SPACE.names if task.config[n] != SPACE.largest()[n]
                }
        return groups

    assert varied(range(0, 20)) == set()  # r has one choice at 8x8
    assert varied(range(20, 40)) == {"ks"}
    assert varied(range(40, 60)) == {"ks", "d"}
    assert varied(range(60, 80)) == {"ks", "d", "e"}
    assert strategy.tasks(30, np.random.default_rng(0))[0].target == "both"


def test_progressive_phase_validation() -> None:
    bad = ProgressiveShrinking(
        phases=[{"open": [], "fraction": 0.5}, {"open": ["zz"], "fraction": 0.5}]
    )
    with pytest.raises(ValueError, match=r"unknown group\(s\) \['zz'\]"):
        bad.setup(SPACE, 10)
    bad = ProgressiveShrinking(phases=[{"open": [], "fraction": 0.5}])
    with pytest.raises(ValueError, match="sum to 1"):
        bad.setup(SPACE, 10)
    custom = ProgressiveShrinking(
        phases=[
            {"open": [], "fraction": 0.5},
            {"open": ["d", "e", "ks"], "fraction": 0.5, "lr_scale": 0.3},
        ]
    )
    custom.setup(SPACE, 10)
    assert custom.lr_scale(2) == 1.0 and custom.lr_scale(7) == 0.3


def test_sorted_chain_is_nested_and_ordered_by_cost() -> None:
    net = onefit.create_supernet("resnet", num_classes=10, image_size=8, base_width=8)
    chain = nested_configs(net.space, 6)
    for small, large in itertools.pairwise(chain):
        assert all(
            net.space[n].index(small[n]) <= net.space[n].index(large[n]) for n in net.space.names
        )
        assert net.macs(small) < net.macs(large)
    assert chain[0] == net.space.smallest() and chain[-1] == net.space.largest()
    strategy = create_strategy("sorted", levels=6, num_samples=2)
    strategy.setup(net.space, 10)
    picked = strategy.tasks(0, np.random.default_rng(0))
    assert len(picked) == 2 and all(t.config in chain for t in picked)
    assert [onefit.ArchConfig.from_json(j) for j in strategy.state_dict()["chain"]] == chain


def test_unknown_strategy_lists_known() -> None:
    with pytest.raises(ValueError, match="known: deps, progressive, sandwich, sorted"):
        create_strategy("nope")


def test_nested_configs_on_a_tiny_space() -> None:
    chain = nested_configs(SearchSpace({"a": [1, 2], "b": ["x", "y", "z"]}), 5)
    assert [tuple(c.values()) for c in chain] == [(1, "x"), (1, "y"), (2, "y"), (2, "z")]
