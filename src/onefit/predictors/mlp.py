"""A small multi-layer perceptron in PyTorch (two hidden layers, SiLU, Adam, full batch).

Inputs and target are standardized with statistics of the training set; the state is
the layer weights as nested lists, so a saved predictor is plain JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from onefit.predictors.base import Regressor, register_regressor


@register_regressor("mlp")
class MLPRegressor(Regressor):
    name = "mlp"

    def __init__(
        self, seed: int = 0, hidden: int = 64, epochs: int = 500, weight_decay: float = 1e-4
    ) -> None:
        super().__init__(seed)
        self.hidden = hidden
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.net: nn.Sequential | None = None
        self.x_mean = self.x_std = np.zeros(0)
        self.y_mean = 0.0
        self.y_std = 1.0

    def _build(self, inputs: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(inputs, self.hidden),
            nn.SiLU(),
            nn.Linear(self.hidden, self.hidden),
            nn.SiLU(),
            nn.Linear(self.hidden, 1),
        ).double()

    def fit(self, features: np.ndarray, targets: np.ndarray) -> MLPRegressor:
        self.x_mean = features.mean(axis=0)
        self.x_std = np.where(features.std(axis=0) > 0, features.std(axis=0), 1.0)
        self.y_mean = float(targets.mean())
        self.y_std = float(targets.std()) or 1.0
        x = torch.from_numpy((features - self.x_mean) / self.x_std)
        y = torch.from_numpy((targets - self.y_mean) / self.y_std)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = self._build(features.shape[1])
        optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-2, weight_decay=self.weight_decay)
        for _ in range(self.epochs):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(self.net(x).squeeze(1), y)
            loss.backward()
            optimizer.step()
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("fit the MLP predictor before using it")
        x = torch.from_numpy((np.asarray(features, dtype=float) - self.x_mean) / self.x_std)
        with torch.no_grad():
            out = self.net(x).squeeze(1).numpy()
        return out * self.y_std + self.y_mean

    def state(self) -> dict[str, Any]:
        if self.net is None:
            raise RuntimeError("fit the MLP predictor before using it")
        return {
            "seed": self.seed,
            "hidden": self.hidden,
            "epochs": self.epochs,
            "weight_decay": self.weight_decay,
            "x_mean": self.x_mean.tolist(),
            "x_std": self.x_std.tolist(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "weights": {k: v.tolist() for k, v in self.net.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MLPRegressor:
        model = cls(
            seed=int(state["seed"]),
            hidden=int(state["hidden"]),
            epochs=int(state["epochs"]),
            weight_decay=float(state["weight_decay"]),
        )
        model.x_mean = np.asarray(state["x_mean"], dtype=float)
        model.x_std = np.asarray(state["x_std"], dtype=float)
        model.y_mean, model.y_std = float(state["y_mean"]), float(state["y_std"])
        model.net = model._build(len(model.x_mean))
        model.net.load_state_dict(
            {k: torch.tensor(v, dtype=torch.float64) for k, v in state["weights"].items()}
        )
        return model
