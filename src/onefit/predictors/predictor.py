"""Predictors of a metric (accuracy, latency, ...) from a config, chosen by cross-validation.

Example:
    >>> import onefit
    >>> space = onefit.SearchSpace({"a": [1, 2, 3], "b": [1, 2, 3], "c": ["x", "y"]})
    >>> configs = [space.sample(seed=i) for i in range(40)]
    >>> values = [c["a"] * 2 + c["b"] + (c["c"] == "y") for c in configs]
    >>> p = fit_predictor(space, configs, values, method="ridge")
    >>> round(float(p.predict([{"a": 3, "b": 3, "c": "y"}])[0]), 2)
    10.0
    >>> p.report["heldout"]["kendall_tau"] > 0.9
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from sklearn.model_selection import KFold

from onefit.errors import UserError, UserTypeError
from onefit.files import read_json_document, write_json_atomic
from onefit.predictors.base import REGRESSORS, Regressor
from onefit.space import ArchConfig, Encoding, SearchSpace

FORMAT = "onefit-predictor/1"
# Tried by method="auto", cheapest first; the MLP is left out of auto (slowest to fit).
AUTO_CANDIDATES = ("ridge", "svr", "gbt")

FeatureFn = Callable[[ArchConfig], float]


class PredictorError(UserError):
    """Bad training data for a predictor, or a predictor file that cannot be used."""


def prediction_metrics(
    truth: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """MAPE (%), RMSE, Kendall tau and the share of predictions within ±10 %."""
    y = np.asarray(truth, dtype=float)
    p = np.asarray(predicted, dtype=float)
    relative = np.abs(p - y) / np.maximum(np.abs(y), np.finfo(float).eps)
    tau = kendalltau(y, p).statistic if len(y) > 1 else math.nan
    return {
        "mape": float(100 * relative.mean()),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "kendall_tau": float(tau),
        "within_10pct": float(np.mean(relative <= 0.10)),
        "n": len(y),
    }


@dataclass
class Predictor:
    """A fitted regressor with the encoding that turns configs into its features."""

    space: SearchSpace
    regressor: Regressor
    encoding: Encoding = "onehot"
    extra_features: dict[str, FeatureFn] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.regressor.name

    def features(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The feature matrix of ``configs``: encoding, then the extra features."""
        validated = [self.space.validate(c) for c in configs]
        columns = [self.space.encode(validated, self.encoding)]
        for fn in self.extra_features.values():
            columns.append(np.array([[float(fn(c))] for c in validated]).reshape(-1, 1))
        return np.hstack(columns)

    def predict(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted values for ``configs`` (a list of configs), vectorized."""
        if isinstance(configs, Mapping):
            raise UserTypeError("predict takes a list of configs; wrap a single config in a list")
        return self.regressor.predict(self.features(configs))

    def evaluate(
        self, configs: Sequence[Mapping[str, Any]], values: Sequence[float]
    ) -> dict[str, float]:
        """:func:`prediction_metrics` of this predictor on held-out ``configs``."""
        return prediction_metrics(values, self.predict(configs))

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the predictor as JSON (no pickle; scikit-learn models as skops data)."""
        data = {
            "format": FORMAT,
            "method": self.method,
            "space": self.space.to_dict(),
            "encoding": self.encoding,
            "extra_features": list(self.extra_features),
            "report": self.report,
            "state": self.regressor.state(),
        }
        write_json_atomic(path, data)

    @classmethod
    def load(
        cls, path: str | Path, extra_features: Mapping[str, FeatureFn] | None = None
    ) -> Predictor:
        """Read a predictor saved by :meth:`save`; pass the same ``extra_features``."""
        path = Path(path)
        data = read_json_document(path, FORMAT, "predictor file", PredictorError)
        extra = dict(extra_features or {})
        try:
            fitted_with = list(data["extra_features"])
            space, encoding = SearchSpace(data["space"]), data["encoding"]
            regressor = REGRESSORS.get(data["method"]).from_state(data["state"])  # type: ignore[attr-defined]
        except (KeyError, TypeError, ValueError) as error:
            raise PredictorError(f"{path}: corrupt predictor ({error!r})") from None
        if sorted(extra) != sorted(fitted_with):
            raise PredictorError(
                f"{path} was fitted with extra features {fitted_with}; "
                f"pass exactly those to Predictor.load, got {sorted(extra)}"
            )
        ordered = {name: extra[name] for name in fitted_with}
        return cls(space, regressor, encoding, ordered, data.get("report", {}))


def out_of_fold(
    method: str, features: np.ndarray, targets: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """Predictions for every sample by a model fitted on the other folds."""
    predicted = np.empty_like(targets)
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features):
        model = REGRESSORS.create(method, seed=seed).fit(features[train], targets[train])
        predicted[test] = model.predict(features[test])
    return predicted


def fit_predictor(
    space: SearchSpace,
    configs: Sequence[Mapping[str, Any]],
    values: Sequence[float],
    *,
    method: str = "auto",
    encoding: Encoding = "onehot",
    extra_features: Mapping[str, FeatureFn] | None = None,
    candidates: Sequence[str] = AUTO_CANDIDATES,
    folds: int = 5,
    seed: int = 0,
) -> Predictor:
    """Fit a predictor of ``values`` from ``configs``.

    ``method="auto"`` scores every name in ``candidates`` by ``folds``-fold
    cross-validated RMSE and keeps the best; a named method is cross-validated too,
    so ``report["heldout"]`` always holds out-of-fold MAPE, RMSE and Kendall tau.
    ``extra_features`` maps names to functions of a config (e.g. analytic MACs)
    appended to the encoding.
    """
    if len(configs) != len(values):
        raise PredictorError(f"{len(configs)} configs but {len(values)} values")
    if len(configs) < 3:
        raise PredictorError(f"need at least 3 (config, value) pairs to fit, got {len(configs)}")
    targets = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(targets)):
        raise PredictorError("values must be finite numbers")
    names = list(candidates) if method == "auto" else [method]
    for name in names:
        REGRESSORS.get(name)  # unknown names fail here, listing the known ones
    predictor = Predictor(space, REGRESSORS.create(names[0], seed=seed), encoding,
                          dict(extra_features or {}))  # fmt: skip
    features = predictor.features(configs)
    folds = min(folds, len(configs))
    scores = {}
    for name in names:
        scores[name] = prediction_metrics(
            targets, out_of_fold(name, features, targets, folds, seed)
        )
    best = min(names, key=lambda n: scores[n]["rmse"])
    predictor.regressor = REGRESSORS.create(best, seed=seed).fit(features, targets)
    predictor.report = {
        "method": best,
        "selection": "cross-validated rmse" if method == "auto" else "given",
        "folds": folds,
        "heldout": scores[best],
        "candidates": scores,
    }
    return predictor
