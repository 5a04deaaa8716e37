"""Classification: cross-entropy on labels, soft cross-entropy against a teacher
(Hinton et al., 2015), top-1 / top-5 accuracy and loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from onefit.errors import UserError
from onefit.tasks.base import MetricState, Task, register_task


@register_task("classification")
class Classification(Task):
    """Labels are class indices; outputs are logits ``(N, classes)``.

    ``label_smoothing`` applies to the training loss only (BigNAS and OFA use 0.1);
    the evaluation ``loss`` is the plain cross-entropy.

    Example:
        >>> task = Classification(label_smoothing=0.0)
        >>> logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
        >>> sorted(task.evaluate([(logits, torch.tensor([1, 2]))]).items())[0]
        ('accuracy', 0.5)
    """

    name = "classification"
    primary_metric = "accuracy"
    direction = "max"
    metrics = ("accuracy", "top5", "loss")
    target_dtype = torch.long

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, label_smoothing=self.label_smoothing)

    def distillation_loss(
        self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        # Cross-entropy against the teacher's softened predictions, scaled by T^2 so
        # gradients keep their size whatever the temperature.
        soft = F.softmax(teacher.detach().float() / temperature, dim=1)
        log_probs = F.log_softmax(outputs.float() / temperature, dim=1)
        return -(soft * log_probs).sum(dim=1).mean() * temperature**2

    def update(self, state: MetricState, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs, targets = outputs.float(), targets.to(outputs.device)
        state.add("accuracy", float((outputs.argmax(dim=1) == targets).sum()))
        k = min(5, outputs.shape[1])
        top = outputs.topk(k, dim=1).indices
        state.add("top5", float((top == targets[:, None]).any(dim=1).sum()))
        state.add("loss", float(F.cross_entropy(outputs, targets, reduction="sum")))
        state.count += int(targets.numel())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label_smoothing": self.label_smoothing}
