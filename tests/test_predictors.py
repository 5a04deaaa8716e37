"""Learned predictors: recover known functions, report held-out error, save without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onefit
from onefit.predictors import (
    Predictor,
    PredictorError,
    fit_predictor,
    list_predictors,
    prediction_metrics,
)

SPACE = onefit.SearchSpace(
    {**{f"k{i}": [3, 5, 7] for i in range(6)}, **{f"e{i}": [3, 4, 6] for i in range(6)},
     "act": ["relu", "swish"]}
)  # fmt: skip


def synthetic(config) -> float:
    """A known nonlinear function of the config: additive terms plus an interaction."""
    value = sum(config[f"k{i}"] * (i + 1) for i in range(6)) / 10
    value += sum(np.log(config[f"e{i}"]) for i in range(6))
    value += 0.5 * (config["act"] == "swish") * (config["k0"] == 7)
    return float(value)


def data(n: int, seed: int):
    configs = SPACE.sample_many(n, seed=seed)
    return configs, [synthetic(c) for c in configs]


@pytest.mark.parametrize("method", list_predictors())
def test_each_predictor_recovers_a_known_function(method):
    train_configs, train_values = data(400, seed=0)
    test_configs, test_values = data(100, seed=1)
    predictor = fit_predictor(SPACE, train_configs, train_values, method=method, seed=0)
    scores = predictor.evaluate(test_configs, test_values)
    assert scores["kendall_tau"] > 0.9, scores
    assert predictor.report["method"] == method
    assert set(predictor.report["heldout"]) >= {"mape", "rmse", "kendall_tau"}


@pytest.mark.parametrize("method", list_predictors())
def test_save_and_load_give_identical_predictions(method, tmp_path):
    configs, values = data(60, seed=2)
    predictor = fit_predictor(SPACE, configs, values, method=method, encoding="ordinal")
    predictor.save(tmp_path / "p.json")
    loaded = Predictor.load(tmp_path / "p.json")
    probe = SPACE.sample_many(30, seed=3)
    assert np.array_equal(loaded.predict(probe), predictor.predict(probe))
    assert loaded.method == method and loaded.encoding == "ordinal"
    assert loaded.report == json.loads(json.dumps(predictor.report))
    text = (tmp_path / "p.json").read_text()
    assert json.loads(text)["format"] == "onefit-predictor/2"  # plain JSON, no pickle


def test_auto_picks_the_lowest_cross_validated_error():
    configs, values = data(80, seed=4)
    predictor = fit_predictor(SPACE, configs, values, method="auto", folds=4)
    candidates = predictor.report["candidates"]
    assert set(candidates) == {"ridge", "svr", "gbt"}
    best = min(candidates, key=lambda name: candidates[name]["rmse"])
    assert predictor.method == best == predictor.report["method"]
    assert predictor.report["heldout"] == candidates[best]


def test_extra_features_are_used_and_must_be_given_back_on_load(tmp_path):
    # The target is exactly an extra feature: with it, ridge is near perfect.
    macs = {"macs": lambda c: sum(c[f"k{i}"] ** 2 * c[f"e{i}"] for i in range(6))}
    configs = SPACE.sample_many(60, seed=5)
    values = [macs["macs"](c) for c in configs]
    predictor = fit_predictor(SPACE, configs, values, method="ridge", extra_features=macs)
    assert predictor.features(configs[:2]).shape == (2, SPACE.onehot_width + 1)
    assert predictor.report["heldout"]["mape"] < 1.0
    predictor.save(tmp_path / "p.json")
    with pytest.raises(PredictorError, match=r"extra features \['macs'\]"):
        Predictor.load(tmp_path / "p.json")
    loaded = Predictor.load(tmp_path / "p.json", extra_features=macs)
    assert np.array_equal(loaded.predict(configs), predictor.predict(configs))


def test_prediction_metrics_on_known_numbers():
    scores = prediction_metrics([100.0, 200.0, 300.0, 400.0], [110.0, 190.0, 300.0, 500.0])
    assert scores["mape"] == pytest.approx((10 + 5 + 0 + 25) / 4)
    assert scores["rmse"] == pytest.approx(np.sqrt((100 + 100 + 0 + 10000) / 4))
    assert scores["kendall_tau"] == pytest.approx(1.0)
    assert scores["within_10pct"] == 0.75


def test_bad_training_data_and_files_give_clear_errors(tmp_path):
    configs, values = data(10, seed=6)
    with pytest.raises(PredictorError, match="10 configs but 9 values"):
        fit_predictor(SPACE, configs, values[:-1])
    with pytest.raises(PredictorError, match="at least 3"):
        fit_predictor(SPACE, configs[:2], values[:2])
    with pytest.raises(PredictorError, match="finite"):
        fit_predictor(SPACE, configs, [float("nan")] * 10)
    with pytest.raises(ValueError, match="unknown predictor 'xgb'; known: gbt, mlp"):
        fit_predictor(SPACE, configs, values, method="xgb")
    with pytest.raises(ValueError, match="dimension 'k0'"):
        fit_predictor(SPACE, [{**configs[0], "k0": 9}, *configs[1:]], values)
    (tmp_path / "partial.json").write_text(json.dumps({"format": "onefit-predictor/1"}))
    with pytest.raises(PredictorError, match=r"partial\.json: corrupt predictor"):
        Predictor.load(tmp_path / "partial.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(PredictorError, match=r"bad\.json is not a predictor file"):
        Predictor.load(tmp_path / "bad.json")
    with pytest.raises(PredictorError, match="no predictor file"):
        Predictor.load(tmp_path / "missing.json")
