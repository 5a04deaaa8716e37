"""Once-for-All progressive shrinking.

Cai et al., "Once-for-All: Train One Network and Specialize it for Efficient
Deployment", ICLR 2020 (https://arxiv.org/abs/1908.09791), Sec. 3.3 and Fig. 3.

Training is split into phases. The first trains only the full network (at elastic
resolution). Each later phase "opens" more dimension groups: kernel size, then depth,
then width (expand ratio / width multiplier); closed groups stay at their largest
choice. From the second phase on, sampled sub-networks learn from the labels and from
the soft predictions of the full network as it was when the first phase ended (a frozen
copy), as in OFA's knowledge-distillation loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from onefit.errors import UserError
from onefit.space import SearchSpace
from onefit.training.strategies.base import Strategy, SubnetTask, dimension_group, sample_config

# Order in which dimension groups open, after the full network (OFA: K, then D, then W).
OPEN_ORDER: tuple[tuple[str, ...], ...] = (("ks",), ("d",), ("e", "w"))


class ProgressiveShrinking(Strategy):
    """OFA progressive shrinking with configurable phases.

    Args:
        phases: list of ``{"open": [groups], "fraction": f, "lr_scale": s}``; groups are
            dimension-name prefixes (``"ks"``, ``"d"``, ``"e"``, ``"w"``, ``"r"``), each
            phase adds to the open set of the previous one, fractions are of the whole
            budget and must sum to 1. Default: full network for 1/4 of the steps, then
            kernel, depth and width for equal shares; elastic resolution throughout.
        num_samples: sub-networks sampled per step after the first phase.

    Example:
        >>> s = ProgressiveShrinking()
        >>> s.setup(SearchSpace({"ks.0": [3, 5], "d.0": [1, 2], "r": [8]}), total_steps=8)
        >>> [p["open"] for p in s.resolved_phases]
        [['r'], ['r', 'ks'], ['r', 'ks', 'd']]
    """

    name = "progressive"

    def __init__(
        self, *, phases: Sequence[Mapping[str, Any]] | None = None, num_samples: int = 2
    ) -> None:
        if num_samples < 1:
            raise UserError(f"num_samples must be >= 1, got {num_samples}")
        self.phases = None if phases is None else [dict(p) for p in phases]
        self.num_samples = num_samples

    def setup(
        self,
        space: SearchSpace,
        total_steps: int,
        *,
        schedule: Callable[[int], float] | None = None,
    ) -> None:
        super().setup(space, total_steps, schedule=schedule)
        groups = {dimension_group(n) for n in space.names}
        phases = self.phases if self.phases is not None else _default_phases(groups)
        resolved: list[dict[str, Any]] = []
        open_groups: list[str] = []
        for phase in phases:
            unknown = sorted(set(phase.get("open", [])) - groups)
            if unknown:
                raise UserError(
                    f"progressive phase opens unknown group(s) {unknown}; "
                    f"the space has {sorted(groups)}"
                )
            open_groups += [g for g in phase.get("open", []) if g not in open_groups]
            resolved.append(
                {
                    "open": list(open_groups),
                    "fraction": float(phase["fraction"]),
                    "lr_scale": float(phase.get("lr_scale", 1.0)),
                }
            )
        total = sum(p["fraction"] for p in resolved)
        if not resolved or abs(total - 1.0) > 1e-6 or any(p["fraction"] <= 0 for p in resolved):
            raise UserError(
                f"progressive phase fractions must be positive and sum to 1, got {total}"
            )
        self.resolved_phases = resolved
        ends = np.cumsum([p["fraction"] for p in resolved]) * self.total_steps
        self._phase_ends = [round(e) for e in ends]
        # The frozen teacher is the full network at the end of the first phase.
        self.frozen_teacher_step = self._phase_ends[0]

    def phase_index(self, step: int) -> int:
        for i, end in enumerate(self._phase_ends):
            if step < end:
                return i
        return len(self._phase_ends) - 1

    def tasks(self, step: int, rng: np.random.Generator) -> list[SubnetTask]:
        index = self.phase_index(step)
        open_groups = set(self.resolved_phases[index]["open"])
        if index == 0:
            return [SubnetTask(sample_config(self.space, rng, open_groups=open_groups), "labels")]
        return [
            SubnetTask(sample_config(self.space, rng, open_groups=open_groups), "both")
            for _ in range(self.num_samples)
        ]

    def lr_scale(self, step: int) -> float:
        return float(self.resolved_phases[self.phase_index(step)]["lr_scale"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "num_samples": self.num_samples, "phases": self.phases}


def _default_phases(groups: set[str]) -> list[dict[str, Any]]:
    later = [[g for g in step if g in groups] for step in OPEN_ORDER]
    later = [g for g in later if g]
    share = 0.75 / max(1, len(later))
    first = {"open": ["r"] if "r" in groups else [], "fraction": 1.0 if not later else 0.25}
    return [first, *({"open": g, "fraction": share} for g in later)]
