"""scikit-learn regressors: ridge, SVR and gradient-boosted trees.

(A random forest was tried and left out: on additive functions of a config, which
accuracy and latency largely are, it ranked held-out configs at Kendall tau ~0.8 where
gradient boosting reached ~0.92 with the same 400 samples.)

Inputs are standardized inside each model's pipeline; SVR also standardizes the
target, since its epsilon-tube is in target units. Fitted models are stored with skops,
which loads only types it is told to trust: scikit-learn's own, plus its tree node
storage for boosted trees (safe for files onefit wrote; see skops' note on
``sklearn.tree._tree.Tree`` before loading a file from someone you do not trust).
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import numpy as np
import skops.io as skops_io
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from onefit.errors import UserError
from onefit.predictors.base import Regressor, register_regressor

TREE_TYPES = ["sklearn.tree._tree.Tree"]


class SklearnRegressor(Regressor):
    """A scikit-learn estimator made by :meth:`build`; stored as a skops payload."""

    trusted: ClassVar[list[str]] = []

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.model: Any = None

    def build(self) -> RegressorMixin:
        raise NotImplementedError

    def fit(self, features: np.ndarray, targets: np.ndarray) -> SklearnRegressor:
        self.model = self.build().fit(features, targets)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(features), dtype=float)

    def state(self) -> dict[str, Any]:
        payload = skops_io.dumps(self.model)
        return {"seed": self.seed, "skops": base64.b64encode(payload).decode("ascii")}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SklearnRegressor:
        regressor = cls(seed=int(state["seed"]))
        payload = base64.b64decode(state["skops"])
        untrusted = set(skops_io.get_untrusted_types(data=payload)) - set(cls.trusted)
        if untrusted:
            raise UserError(f"predictor file holds unexpected types {sorted(untrusted)}")
        regressor.model = skops_io.loads(payload, trusted=cls.trusted or None)
        return regressor


@register_regressor("ridge")
class RidgeRegressor(SklearnRegressor):
    name = "ridge"

    def build(self) -> RegressorMixin:
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


@register_regressor("svr")
class SVRRegressor(SklearnRegressor):
    name = "svr"

    def build(self) -> RegressorMixin:
        return TransformedTargetRegressor(
            make_pipeline(StandardScaler(), SVR(C=10.0, epsilon=0.01)),
            transformer=StandardScaler(),
        )


@register_regressor("gbt")
class GradientBoostingModel(SklearnRegressor):
    name = "gbt"
    trusted = TREE_TYPES

    def build(self) -> RegressorMixin:
        return GradientBoostingRegressor(
            n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8,
            random_state=self.seed,
        )  # fmt: skip
