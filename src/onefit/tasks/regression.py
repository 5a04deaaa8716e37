"""Regression: mean-squared error on real-valued targets, MSE to the teacher's outputs
for distillation, MSE and MAE as metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from onefit.tasks.base import MetricState, Task, register_task


@register_task("regression")
class Regression(Task):
    """Targets are real values ``(N,)`` or ``(N, outputs)``; outputs ``(N, outputs)``.

    Example:
        >>> task = Regression()
        >>> outputs, targets = torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 3.0])
        >>> task.evaluate([(outputs, targets)])
        {'mse': 0.5, 'mae': 0.5}
    """

    name = "regression"
    primary_metric = "mse"
    direction = "min"
    metrics = ("mse", "mae")
    target_dtype = torch.float32

    @staticmethod
    def _match(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(device=outputs.device, dtype=torch.float32)
        return targets.reshape(outputs.shape)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.float(), self._match(outputs, targets))

    def distillation_loss(
        self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        # No distribution to soften: the student regresses onto the teacher's outputs.
        return F.mse_loss(outputs.float(), teacher.detach().float())

    def update(self, state: MetricState, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs = outputs.float()
        error = outputs - self._match(outputs, targets)
        per_sample = error.reshape(len(error), -1)
        state.add("mse", float(per_sample.pow(2).mean(dim=1).sum()))
        state.add("mae", float(per_sample.abs().mean(dim=1).sum()))
        state.count += len(error)
