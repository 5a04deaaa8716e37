"""Batch norm over a prefix of its channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onefit.errors import UserError
from onefit.static import LayerNorm2d, layer_with


def _prefix(channels: int, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if t is None else t[:channels] for t in tensors)


def prefix_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm`` applied to the first ``x.shape[-1]`` features (transformer widths)."""
    width = x.shape[-1]
    weight, bias = _prefix(width, norm.weight, norm.bias)
    return F.layer_norm(x, (width,), weight, bias, norm.eps)


@torch.no_grad()
def static_layer_norm(norm: nn.LayerNorm, width: int) -> nn.LayerNorm:
    """A plain ``nn.LayerNorm`` with a copy of ``norm``'s first ``width`` features."""
    return layer_with(
        nn.LayerNorm,
        width,
        eps=norm.eps,
        tensors={"weight": norm.weight[:width], "bias": norm.bias[:width]},
    )


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that normalises however many leading channels it receives.

    Affine parameters and running statistics are sliced to the input's channel count,
    so each sub-network trains and later recalibrates its own prefix of the shared
    statistics. Subclassing ``nn.BatchNorm2d`` keeps every tool that resets or
    recalibrates batch-norm layers working on supernets too.

    Example:
        >>> bn = ElasticBatchNorm2d(16).eval()
        >>> bn(torch.randn(2, 10, 4, 4)).shape
        torch.Size([2, 10, 4, 4])
    """

    @classmethod
    @torch.no_grad()
    def from_batch_norm(cls, bn: nn.BatchNorm2d) -> ElasticBatchNorm2d:
        """An elastic copy of ``bn`` with the same settings, parameters and statistics."""
        elastic = cls(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
        )
        elastic.load_state_dict(bn.state_dict())
        return elastic

    _frozen = False
    _slice_cache: tuple[tuple, tuple[torch.Tensor | None, ...]] | None = None

    def set_frozen(self, frozen: bool) -> None:
        """Allow (or stop) reusing channel views in evaluation (see ``Supernet.frozen``)."""
        self._frozen = frozen
        self._slice_cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels > self.num_features:
            raise UserError(
                f"{type(self).__name__} holds {self.num_features} channels, got {channels}"
            )
        if (
            self._frozen
            and not self.training
            and self.running_mean is not None
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        ):
            mean, var, weight, bias = self._inference_slices(channels)
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            # momentum=None means a cumulative average, which BN recalibration relies on.
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        mean, var, weight, bias = _prefix(
            channels,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
        )
        return F.batch_norm(x, mean, var, weight, bias, use_batch_stats, factor, self.eps)

    def _inference_slices(self, channels: int) -> tuple[torch.Tensor | None, ...]:
        """Channel views for frozen evaluation (see ``Supernet.frozen``).

        Views follow in-place updates of what they view. Replacing a tensor inside
        ``frozen()`` breaks its contract; a move with ``.to()`` is still caught, since
        all four tensors move with ``running_mean``.
        """
        key = (channels, self._buffers["running_mean"].data_ptr())  # type: ignore[union-attr]
        cache = self._slice_cache
        if cache is None or cache[0] != key:
            tensors = (self.running_mean, self.running_var, self.weight, self.bias)
            cache = self._slice_cache = (key, _prefix(channels, *tensors))
        return cache[1]

    @torch.no_grad()
    def to_static(self, channels: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` with a copy of the first ``channels`` channels."""

        def first(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[:channels]

        tensors = {
            "weight": first(self.weight),
            "bias": first(self.bias),
            "running_mean": first(self.running_mean),
            "running_var": first(self.running_var),
            "num_batches_tracked": self.num_batches_tracked,
        }
        if all(t is None for t in tensors.values()):  # nothing to copy
            return nn.BatchNorm2d(
                channels, self.eps, self.momentum, affine=False, track_running_stats=False
            )
        return layer_with(
            nn.BatchNorm2d,
            channels,
            eps=self.eps,
            momentum=self.momentum,
            affine=self.affine,
            track_running_stats=self.track_running_stats,
            tensors=tensors,
        )


class ElasticLayerNorm(nn.LayerNorm):
    """Layer norm over a prefix of the features of ``channel_dim``.

    ``channel_dim=-1`` is ``nn.LayerNorm`` over the last dimension (transformers,
    ConvNeXt blocks); ``channel_dim=1`` normalises the channels of an ``(N, C, H, W)``
    map (ConvNeXt's ``LayerNorm2d``). The statistics are over the active features only,
    which is what the extracted, narrower layer computes.

    Example:
        >>> ln = ElasticLayerNorm(16, channel_dim=1)
        >>> ln(torch.randn(2, 12, 4, 4)).shape
        torch.Size([2, 12, 4, 4])
    """

    def __init__(self, features: int, *, channel_dim: int = -1, eps: float = 1e-5) -> None:
        super().__init__(features, eps=eps)
        if channel_dim not in (1, -1):
            raise UserError(f"channel_dim must be 1 or -1, got {channel_dim}")
        self.channel_dim = channel_dim

    @classmethod
    @torch.no_grad()
    def from_layer_norm(cls, ln: nn.LayerNorm, channel_dim: int = -1) -> ElasticLayerNorm:
        """An elastic copy of a 1-D, affine ``ln`` (same eps and parameters)."""
        if len(ln.normalized_shape) != 1 or not ln.elementwise_affine:
            raise UserError(f"only affine layer norms over one dimension convert, got {ln}")
        elastic = cls(ln.normalized_shape[0], channel_dim=channel_dim, eps=ln.eps)
        elastic.weight.copy_(ln.weight)
        if ln.bias is not None:
            elastic.bias.copy_(ln.bias)
        else:
            elastic.bias = None
        return elastic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[self.channel_dim]
        if channels > self.normalized_shape[0]:
            raise UserError(
                f"ElasticLayerNorm holds {self.normalized_shape[0]} features, got {channels}"
            )
        weight, bias = _prefix(channels, self.weight, self.bias)
        if self.channel_dim == 1:
            x = x.permute(0, 2, 3, 1)
        out = F.layer_norm(x, (channels,), weight, bias, self.eps)
        return out.permute(0, 3, 1, 2) if self.channel_dim == 1 else out

    @torch.no_grad()
    def to_static(self, channels: int) -> nn.Module:
        """A plain layer norm over the first ``channels`` features.

        For ``channel_dim=1`` it is :class:`onefit.static.LayerNorm2d` (a permuted
        ``nn.LayerNorm``).
        """
        cls = LayerNorm2d if self.channel_dim == 1 else nn.LayerNorm
        ln = cls(channels, eps=self.eps, bias=self.bias is not None)
        ln.weight.copy_(self.weight[:channels])
        if self.bias is not None and ln.bias is not None:
            ln.bias.copy_(self.bias[:channels])
        return ln

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channel_dim={self.channel_dim}"
