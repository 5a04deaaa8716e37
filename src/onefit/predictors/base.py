"""What a predictor model offers: fit and predict on feature arrays, and plain-data state.

A :class:`Regressor` works on numbers only; :class:`onefit.predictors.Predictor` wraps
one with the encoding of configs into features. State is JSON-able data (and, for
scikit-learn models, a skops payload), never a pickle that runs code when loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from onefit.registry import Registry


class Regressor(ABC):
    """A regression model on feature arrays, registered by name in :data:`REGRESSORS`."""

    name: str = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @abstractmethod
    def fit(self, features: np.ndarray, targets: np.ndarray) -> Regressor:
        """Fit on ``features`` (n x d) and ``targets`` (n,); returns ``self``."""

    @abstractmethod
    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``features``, shape (n,)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The fitted model as JSON-able data (see :meth:`from_state`)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Regressor:
        """Rebuild a fitted model from :meth:`state`."""


REGRESSORS: Registry[Regressor] = Registry("predictor")
register_regressor = REGRESSORS.register


def create_regressor(name: str, **kwargs: Any) -> Regressor:
    """Build the (unfitted) predictor model registered as ``name`` (``ridge``, ``mlp``, ...)."""
    return REGRESSORS.create(name, **kwargs)


def list_regressors() -> list[str]:
    """Names of the registered predictor models (also :func:`onefit.predictors.list_predictors`)."""
    return REGRESSORS.names()
