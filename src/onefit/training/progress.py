"""Progress bars and epoch summaries for training (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """A step bar per epoch with the running loss; silent when disabled (other ranks, tests)."""

    def __init__(self, *, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._loss_sum = 0.0
        self._count = 0

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, error, trace)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._loss_sum, self._count = 0.0, 0
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                f"epoch {epoch + 1}/{epochs}", total=steps, completed=done, loss="-", speed=""
            )

    def advance(self, losses: Sequence[float], rates: tuple[float, float]) -> None:
        """``losses`` of the steps since the last call; ``rates``: images per second and
        the share of time spent waiting for data."""
        if not losses:
            return
        self._loss_sum += sum(losses)
        self._count += len(losses)
        if self._progress is not None:
            images_per_second, data_wait = rates
            self._progress.update(
                self._task,
                advance=len(losses),
                loss=f"{self._loss_sum / self._count:.4f}",
                speed=f"{images_per_second:,.0f} img/s, data wait {data_wait:.0%}",
            )

    def log_epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        accuracies = ", ".join(
            f"{key[4:-9]} {value:.2%}" for key, value in record.items() if key.endswith("_accuracy")
        )
        loss = record.get("train_loss")
        loss_text = f"{loss:.4f}" if loss is not None else "-"
        self.console.print(
            f"epoch {record['epoch']}: train loss {loss_text}, val accuracy: {accuracies} "
            f"({record['epoch_seconds']:.1f}s, {record['images_per_second']:,.0f} img/s, "
            f"data wait {record['data_wait_share']:.0%})"
        )
