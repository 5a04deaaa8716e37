from __future__ import annotations

import torch
from torch import nn

from onefit.metrics import Cost, conv_cost, count, linear_cost
from onefit.static import Residual, SqueezeExcite


def test_count_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True),  # 8x8 -> 4x4
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    macs = 8 * 3 * 9 * 16 + 8 * 25 * 16 + 8 * 5  # bias adds are not MACs
    params = (8 * 27 + 8) + 16 + 8 * 25 + (40 + 5)
    assert count(model, (3, 8, 8)) == Cost(macs, params)


def test_analytic_helpers_agree_with_the_counter() -> None:
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(6))
    assert count(model, (4, 5, 5)) == conv_cost(4, 6, 3, 5, groups=2, batch_norm=True)
    assert count(nn.Linear(7, 3), (7,)) == linear_cost(7, 3)
    assert count(nn.Linear(7, 3, bias=False), (7,)) == linear_cost(7, 3, bias=False)


def test_residual_and_se_add_only_their_convs() -> None:
    block = Residual(nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), SqueezeExcite(16, 8)))
    expected = (
        conv_cost(16, 16, 1, 4)
        + conv_cost(16, 8, 1, 1, bias=True)
        + conv_cost(8, 16, 1, 1, bias=True)
    )
    assert count(block, (16, 4, 4)) == expected


def test_count_keeps_training_mode_and_needs_no_grad() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    count(model, (4,))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_count_attention_matmuls() -> None:
    layer = nn.MultiheadAttention(16, 2, batch_first=True)
    # q/k/v projections (3 x 16x16 per token), scores and weighted sum (2 x 5x5x16), out proj.
    tokens = 5
    expected_macs = 3 * tokens * 16 * 16 + 2 * tokens * tokens * 16 + tokens * 16 * 16

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    assert count(SelfAttention(), (tokens, 16)).macs == expected_macs
