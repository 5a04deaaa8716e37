"""Conformance suite: every registered task must pass every test here.

A task is fed outputs and targets made from its own ``target_dtype`` (class indices or
real values), so a newly registered task is checked without touching this file.
"""

from __future__ import annotations

import math

import pytest
import torch

from onefit.tasks import MetricState, Task, create_task, list_tasks

N, OUTPUTS = 12, 4


@pytest.fixture(params=list_tasks())
def task(request: pytest.FixtureRequest) -> Task:
    return create_task(request.param)


def _data(task: Task, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    outputs = torch.randn(N, OUTPUTS, generator=gen)
    if task.target_dtype.is_floating_point:
        targets = torch.randn(N, OUTPUTS, generator=gen).to(task.target_dtype)
    else:
        targets = torch.randint(0, OUTPUTS, (N,), generator=gen).to(task.target_dtype)
    return outputs, targets


def test_task_declares_its_metrics_and_rebuilds_from_its_description(task: Task) -> None:
    assert task.name in list_tasks()
    assert task.direction in ("max", "min")
    assert task.metrics and task.primary_metric == task.metrics[0]
    assert len(set(task.metrics)) == len(task.metrics)
    description = dict(task.describe())
    rebuilt = create_task(description.pop("name"), **description)
    assert type(rebuilt) is type(task) and rebuilt.describe() == task.describe()


def test_evaluate_returns_every_metric_averaged_over_samples(task: Task) -> None:
    outputs, targets = _data(task)
    whole = task.evaluate([(outputs, targets)])
    assert set(whole) == set(task.metrics)
    assert all(math.isfinite(value) for value in whole.values()), whole
    # Means over samples: batches of any size give the figures of the whole split.
    pieces = [(outputs[:5], targets[:5]), (outputs[5:6], targets[5:6]), (outputs[6:], targets[6:])]
    split = task.evaluate(pieces)
    assert split == pytest.approx(whole, rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="empty validation set"):
        task.finish(MetricState())


def test_loss_is_a_differentiable_scalar_and_lowering_it_improves_the_primary_metric(
    task: Task,
) -> None:
    start, targets = _data(task, seed=1)
    outputs = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([outputs], lr=0.05)
    first = None
    for _ in range(200):
        optimizer.zero_grad()
        loss = task.loss(outputs, targets)
        assert loss.dim() == 0 and torch.isfinite(loss)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        optimizer.step()
    assert float(task.loss(outputs, targets).detach()) < first
    before = task.evaluate([(start, targets)])[task.primary_metric]
    after = task.evaluate([(outputs.detach(), targets)])[task.primary_metric]
    assert task.better(after, before), (before, after)
    assert not task.better(before, after)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_loss_is_stationary_where_the_student_matches_the_teacher(
    task: Task, temperature: float
) -> None:
    teacher, _ = _data(task, seed=2)
    student = teacher.clone().requires_grad_(True)
    task.distillation_loss(student, teacher, temperature).backward()
    assert student.grad is not None
    assert student.grad.abs().max() < 1e-6
    # Away from the teacher the loss is higher and pulls the student back.
    noise = torch.randn(teacher.shape, generator=torch.Generator().manual_seed(3))
    away = (teacher + noise).requires_grad_(True)
    loss_away = task.distillation_loss(away, teacher, temperature)
    assert loss_away > task.distillation_loss(teacher, teacher, temperature)
    loss_away.backward()
    assert away.grad is not None and away.grad.abs().max() > 1e-4
    # The teacher is a target: no gradient flows into it.
    teacher_with_grad = teacher.clone().requires_grad_(True)
    assert not task.distillation_loss(teacher, teacher_with_grad, temperature).requires_grad
