"""Pareto sets and hypervolume, for any number of objectives.

Points are rows of an array in *minimization* form (negate what is maximized; see
:func:`to_minimization`). Hypervolume uses pymoo's exact algorithm.

Example:
    >>> import numpy as np
    >>> points = np.array([[1.0, 4.0], [2.0, 2.0], [3.0, 3.0], [4.0, 1.0]])
    >>> pareto_mask(points).tolist()
    [True, True, False, True]
    >>> hypervolume(points, reference=np.array([5.0, 5.0]))
    11.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pymoo.indicators.hv import HV

Sense = str  # "min" or "max"


def to_minimization(
    metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, Sense]
) -> np.ndarray:
    """Rows of objective values with maximized objectives negated."""
    signs = np.array([-1.0 if sense == "max" else 1.0 for sense in objectives.values()])
    values = np.array([[float(m[name]) for name in objectives] for m in metrics], dtype=float)
    return values.reshape(len(metrics), len(objectives)) * signs


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows (minimization; duplicates all kept)."""
    points = np.asarray(points, dtype=float)
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        # Rows that i dominates: no better anywhere, worse somewhere.
        dominated = np.all(points[i] <= points, axis=1) & np.any(points[i] < points, axis=1)
        mask &= ~dominated
    return mask


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimization)."""
    points = np.asarray(points, dtype=float)
    inside = points[np.all(points < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=np.asarray(reference, dtype=float))(inside))


def normalized_hypervolume(points: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Hypervolume after scaling each objective from [lower, upper] to [0, 1], reference 1.

    With ``lower``/``upper`` the best/worst values reachable, 1.0 would be a single point
    best at everything; comparing searches needs the same bounds for all of them.
    """
    span = np.where(upper > lower, upper - lower, 1.0)
    scaled = (np.asarray(points, dtype=float) - lower) / span
    return hypervolume(scaled, np.ones(len(lower)))
