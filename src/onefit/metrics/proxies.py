"""Zero-cost proxies: scores of an untrained or trained network from one batch.

Each proxy takes a static model and one batch and returns a float; larger is meant to
mean "more accurate". They serve as cheap objectives or as predictor features.

- ``synflow`` (Tanaka et al. 2020; as a NAS proxy, Abdelfattah et al., "Zero-Cost
  Proxies for Lightweight NAS", ICLR 2021): in float64, with every weight replaced by
  its absolute value and batch norm in eval mode, the sum over weights of
  |w * d(sum of outputs)/dw| for an all-ones input. Returned as log10 of that sum, since
  it spans hundreds of orders of magnitude across networks.
- ``grad_norm`` (Abdelfattah et al. 2021): the sum over weight tensors of the L2 norm
  of the cross-entropy gradient on the batch (model in train mode).
- ``naswot`` (Mellor et al., "Neural Architecture Search without Training", ICML
  2021): the log-determinant of the kernel K[i, j] = number of activation units on
  which inputs i and j agree (both positive or both not), over the inputs of every
  activation layer (ReLU, ReLU6, Hardswish, SiLU, GELU).
- ``params`` and ``macs``: counts (log10), the baselines every proxy must beat.

Every proxy works on a copy and is deterministic for a fixed batch.

Example:
    >>> import onefit, torch
    >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=8)
    >>> model = net.extract(net.space.smallest())
    >>> x, y = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    >>> scores = compute_proxies(model, x, y)
    >>> sorted(scores)
    ['grad_norm', 'macs', 'naswot', 'params', 'synflow']
    >>> compute_proxies(model, x, y) == scores
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from onefit.metrics.counting import count
from onefit.registry import Registry

ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]
PROXIES: Registry[float] = Registry("zero-cost proxy")
register_proxy = PROXIES.register

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of convolutions and linear layers: the tensors the proxies score."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Conv1d))]


@register_proxy("synflow")
def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    ones = torch.ones_like(inputs[:1], dtype=torch.float64)
    model(ones).sum().backward()
    total = sum(
        float((w * w.grad).abs().sum().detach()) for w in _weights(model) if w.grad is not None
    )
    return math.log10(total) if total > 0 else -math.inf


@register_proxy("grad_norm")
def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    model = copy.deepcopy(model).train()
    model.zero_grad()
    F.cross_entropy(model(inputs), targets).backward()
    return float(sum(float(w.grad.norm()) for w in _weights(model) if w.grad is not None))


@register_proxy("naswot")
def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    model = copy.deepcopy(model).eval()
    n = inputs.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        codes = (args[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    hooks = [
        m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, ACTIVATIONS)
    ]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


@register_proxy("params")
def params(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    return math.log10(max(sum(p.numel() for p in model.parameters()), 1))


@register_proxy("macs")
def macs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    return math.log10(max(count(model, tuple(inputs.shape[1:])).macs, 1))


def create_proxy(name: str) -> ProxyFn:
    """The zero-cost proxy registered as ``name``: a function ``(model, inputs, targets)``."""
    return PROXIES.get(name)


def list_proxies() -> list[str]:
    """Names of the registered zero-cost proxies."""
    return PROXIES.names()


def compute_proxies(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Scores of ``model`` for each proxy in ``names`` (default: all) on one batch."""
    chosen = list_proxies() if names is None else list(names)
    scores = {}
    for name in chosen:
        proxy = create_proxy(name)
        # Dropout draws random masks in train mode: a fixed seed keeps scores repeatable.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            scores[name] = float(proxy(model, inputs, targets))
    return scores
