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

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from sklearn.model_selection import KFold

from onefit.digest import read_document, seal
from onefit.errors import UserError, UserTypeError
from onefit.files import write_json_atomic
from onefit.predictors.base import REGRESSORS, Regressor
from onefit.space import ArchConfig, Encoding, SearchSpace

# Format 2 adds the search space's fingerprint and the sha256 of the content, both checked
# on load. Format 1 files (neither) are still read; saving writes format 2.
#
# No pickle, on purpose: a pickle names callables to run while it loads, so a file put
# where a predictor is expected could run any code. The file is UTF-8 JSON (a pickle is
# refused as "not JSON" before anything reads it); model parameters are JSON numbers (MLP)
# or a skops payload (scikit-learn models), which loads only the types it is told to trust
# and is checked for others before loading (see onefit.predictors.sklearn_models).
FORMAT = "onefit-predictor/2"
READABLE_FORMATS = (FORMAT, "onefit-predictor/1")
# Tried by method="auto", cheapest first; the MLP is left out of auto (slowest to fit).
AUTO_CANDIDATES = ("ridge", "svr", "gbt")

FeatureFn = Callable[[ArchConfig], float]


class PredictorError(UserError):
    """Bad training data for a predictor, or a predictor file that cannot be used."""


def space_fingerprint(space: SearchSpace) -> str:
    """The sha256 of the space's canonical JSON (dimensions in order, their choices).

    Example:
        >>> import onefit
        >>> a = onefit.SearchSpace({"a": [1, 2], "b": ["x"]})
        >>> space_fingerprint(a) == space_fingerprint(onefit.SearchSpace(a.to_dict()))
        True
        >>> space_fingerprint(a) == space_fingerprint(onefit.SearchSpace({"a": [1, 2, 3]}))
        False
    """
    text = json.dumps(space.to_dict(), separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _space_difference(mine: SearchSpace, other: SearchSpace) -> str:
    """Which dimensions differ between two spaces, in words."""
    a, b = mine.to_dict(), other.to_dict()
    parts = []
    if list(a) != list(b):
        missing, extra = [n for n in b if n not in a], [n for n in a if n not in b]
        if missing:
            parts.append(f"the predictor's space lacks {missing}")
        if extra:
            parts.append(f"it has {extra} that the given space does not")
        if not missing and not extra:
            parts.append(f"dimensions in another order ({list(a)} vs {list(b)})")
    for name in a:
        if name in b and a[name] != b[name]:
            parts.append(f"{name!r} has choices {a[name]} vs {b[name]}")
    return "; ".join(parts)[:600] or "the spaces differ"


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats as None (standard JSON, so it can be hashed)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
        """Write the predictor as JSON (no pickle; scikit-learn models as skops data),
        with its space's fingerprint and the sha256 of the content. Non-finite figures of
        the report (a Kendall tau of constant predictions) are written as null."""
        data = {
            "format": FORMAT,
            "method": self.method,
            "space": self.space.to_dict(),
            "space_sha256": space_fingerprint(self.space),
            "encoding": self.encoding,
            "extra_features": list(self.extra_features),
            "report": _plain(self.report),
            "state": _plain(self.regressor.state()),
        }
        write_json_atomic(path, seal(data))

    @classmethod
    def load(
        cls,
        path: str | Path,
        extra_features: Mapping[str, FeatureFn] | None = None,
        *,
        space: SearchSpace | None = None,
    ) -> Predictor:
        """Read a predictor saved by :meth:`save`; pass the same ``extra_features``.

        With ``space``, the predictor must have been fitted on that search space (same
        dimensions, in the same order, with the same choices): another one is a
        :class:`PredictorError` naming what differs. A file changed after it was saved,
        or whose model does not fit its space's features, is refused too.
        """
        path = Path(path)
        data = read_document(path, READABLE_FORMATS, "predictor file", PredictorError)
        extra = dict(extra_features or {})
        try:
            fitted_with = data["extra_features"]
            if not isinstance(fitted_with, list) or not all(
                isinstance(n, str) for n in fitted_with
            ):
                raise TypeError(f"extra_features must be a list of names, got {fitted_with!r}")
            fitted_space = SearchSpace(data["space"])
            encoding = data["encoding"]
            if encoding not in ("onehot", "ordinal"):
                raise ValueError(f"encoding must be 'onehot' or 'ordinal', got {encoding!r}")
            method, state = data["method"], data["state"]
            if not isinstance(method, str) or not isinstance(state, dict):
                raise TypeError("method must be a name and state an object")
        except (KeyError, TypeError, ValueError) as error:
            raise PredictorError(f"{path}: corrupt predictor ({error})") from None
        fingerprint = space_fingerprint(fitted_space)
        recorded = data.get("space_sha256", fingerprint)  # format 1 files record none
        if recorded != fingerprint:
            raise PredictorError(
                f"{path}: its space does not match its recorded fingerprint (space_sha256 "
                f"{str(recorded)[:16]}..., computed {fingerprint[:16]}...)"
            )
        if space is not None and space_fingerprint(space) != fingerprint:
            raise PredictorError(
                f"{path} was fitted on another search space (fingerprint {fingerprint[:16]}..., "
                f"this space {space_fingerprint(space)[:16]}...): "
                f"{_space_difference(fitted_space, space)}; fit a predictor on this space"
            )
        try:
            regressor = REGRESSORS.get(method).from_state(state)  # type: ignore[attr-defined]
        except Exception as error:  # a damaged model payload: one clear message
            raise PredictorError(
                f"{path}: cannot rebuild its {method!r} model ({type(error).__name__}: "
                f"{str(error)[:200]})"
            ) from None
        if sorted(extra) != sorted(fitted_with):
            raise PredictorError(
                f"{path} was fitted with extra features {fitted_with}; "
                f"pass exactly those to Predictor.load, got {sorted(extra)}"
            )
        ordered = {name: extra[name] for name in fitted_with}
        report = data.get("report", {})
        predictor = cls(
            fitted_space, regressor, encoding, ordered, report if isinstance(report, dict) else {}
        )
        predictor._check_model(path)
        return predictor

    def _check_model(self, path: Path) -> None:
        """The model must take this space's features and give one finite number per row."""
        width = self.space.encode([self.space.smallest()], self.encoding).shape[1]
        probe = np.zeros((1, width + len(self.extra_features)))
        try:
            out = np.asarray(self.regressor.predict(probe), dtype=float)
        except Exception as error:
            raise PredictorError(
                f"{path}: its model does not take the {probe.shape[1]} features of its space "
                f"({type(error).__name__}: {str(error)[:200]})"
            ) from None
        if out.shape != (1,) or not np.all(np.isfinite(out)):
            raise PredictorError(
                f"{path}: its model gives {out.tolist()} for one config (one finite number "
                "expected)"
            )


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
