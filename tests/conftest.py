"""Shared test helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def randomize_for_comparison(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm, linear layer and kernel transform non-trivial values.

    Fresh supernets zero-initialise some BN scales and give the classifier tiny weights,
    which would let an output comparison pass with wrong channels. Random BN affine
    parameters and default-scale linear weights make every channel matter; running
    statistics are set by :func:`calibrate_batchnorm`.
    """
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
            module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 0.4 - 0.2)
        elif isinstance(module, nn.Linear):
            bound = module.in_features**-0.5
            module.weight.copy_((torch.rand(module.weight.shape, generator=gen) * 2 - 1) * bound)
        elif hasattr(module, "kernel_transforms"):
            # Move the kernel-transform matrices away from the identity, so a test
            # catches an extraction that crops kernels without transforming them.
            for matrix in module.kernel_transforms.values():
                matrix.add_(torch.randn(matrix.shape, generator=gen) * 0.05)
    return net


@torch.no_grad()
def calibrate_batchnorm(net: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Set BN running statistics to those of ``batch`` for the active sub-network, then eval.

    Random running statistics let activations explode or die with depth, and a network
    whose output no longer depends on its input cannot tell right from wrong slices.
    """
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    net(batch)
    return net.eval()


def pretrain(model: nn.Module, batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
             epochs: int, lr: float) -> nn.Module:  # fmt: skip
    """Briefly train a plain model with AdamW (``batches()`` gives one epoch); eval mode."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(epochs):
        for x, y in batches():
            logits = model(x)
            loss = F.cross_entropy(getattr(logits, "logits", logits), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def sandwich_fine_tune(net: Any, data: Any, run_dir: Path, **settings: Any) -> tuple[dict, dict]:
    """Fine-tune a converted supernet with the sandwich rule through ``onefit.train``
    (InstaTune's recipe), starting from its weights. Returns the validation accuracy of
    the smallest and largest sub-networks before and after, keyed "smallest"/"largest"."""
    import onefit
    from onefit.training import evaluate_config

    val = list(zip(*(t.split(256) for t in data.val_tensors())))
    configs = {"smallest": net.space.smallest(), "largest": net.space.largest()}

    def accuracy(model: Any) -> dict:
        return {k: evaluate_config(model, c, val, None)["accuracy"] for k, c in configs.items()}

    before = accuracy(net)
    weights = run_dir / "converted.pt"
    torch.save(net.state_dict(), weights)
    result = onefit.train(
        supernet=net.spec["name"], supernet_kwargs=net.spec["kwargs"], init_weights=str(weights),
        strategy="sandwich", optimizer="adamw", batch_size=64, run_dir=str(run_dir / "run"),
        data=data, progress=False, tensorboard=False, **settings,
    )  # fmt: skip
    return before, accuracy(onefit.load_supernet(result.run_dir))
