"""Learned predictors of accuracy, latency or any metric, for any search space.

Models are a registry (``ridge``, ``svr``, ``gbt``, ``mlp``); ``fit_predictor``
encodes configs, picks a model by cross-validation and reports held-out MAPE, RMSE and
Kendall tau.
"""

from onefit.predictors import mlp, sklearn_models
from onefit.predictors.base import (
    REGRESSORS,
    Regressor,
    create_regressor,
    list_regressors,
    register_regressor,
)
from onefit.predictors.predictor import (
    Predictor,
    PredictorError,
    fit_predictor,
    prediction_metrics,
)


def list_predictors() -> list[str]:
    """Names of the registered predictor models."""
    return REGRESSORS.names()


__all__ = [
    "REGRESSORS",
    "Predictor",
    "PredictorError",
    "Regressor",
    "create_regressor",
    "fit_predictor",
    "list_predictors",
    "list_regressors",
    "mlp",
    "prediction_metrics",
    "register_regressor",
    "sklearn_models",
]
