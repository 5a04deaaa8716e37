"""Shared test helpers."""

from __future__ import annotations

import torch
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
