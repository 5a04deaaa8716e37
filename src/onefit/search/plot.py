"""Pareto-front plots (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from onefit.errors import MissingDependencyError
from onefit.search.store import Evaluation


def plot_front(
    history: Sequence[Evaluation],
    pareto: Sequence[Evaluation],
    objectives: Mapping[str, str],
    path: str | Path,
    x: str | None = None,
    y: str | None = None,
    *,
    title: str = "",
) -> Path:
    """Scatter every successful evaluation on two objectives; the Pareto set as a line.

    ``x``/``y`` default to the last and first objectives (e.g. latency vs accuracy).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install matplotlib") from None
    names = list(objectives)
    x = x or names[-1]
    y = y or names[0]
    ok = [e for e in history if e.ok]
    front = sorted(pareto, key=lambda e: e.metrics[x])
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    axes.scatter([e.metrics[x] for e in ok], [e.metrics[y] for e in ok], s=12, alpha=0.5,
                 color="tab:gray", label=f"evaluated ({len(ok)})")  # fmt: skip
    axes.plot([e.metrics[x] for e in front], [e.metrics[y] for e in front], "o-",
              color="tab:red", label=f"Pareto set ({len(front)})")  # fmt: skip
    axes.set_xlabel(f"{x} ({objectives[x]})")
    axes.set_ylabel(f"{y} ({objectives[y]})")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
