"""What a supernet is trained for: a registry of tasks (loss, distillation, metrics).

A :class:`Task` owns everything that depends on what the outputs mean: the loss on
labels, the loss against a teacher's outputs (in-place distillation), and the
evaluation metrics with the primary one and its direction. Training strategies, BN
recalibration, evaluation, search evaluators and model cards ask the task instead of
assuming classification.

Example:
    >>> import torch
    >>> from onefit.tasks import create_task, list_tasks
    >>> list_tasks()
    ['classification', 'regression']
    >>> task = create_task("classification")
    >>> task.primary_metric, task.direction
    ('accuracy', 'max')
    >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> task.evaluate([(logits, labels)])["accuracy"]
    0.5
"""

from onefit.tasks import classification, regression
from onefit.tasks.base import (
    TASKS,
    MetricState,
    Task,
    create_task,
    list_tasks,
    register_task,
)
from onefit.tasks.classification import Classification
from onefit.tasks.regression import Regression

__all__ = [
    "TASKS",
    "Classification",
    "MetricState",
    "Regression",
    "Task",
    "classification",
    "create_task",
    "list_tasks",
    "register_task",
    "regression",
]
