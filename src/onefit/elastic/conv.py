"""Elastic 2-D convolution: width slicing and Once-for-All's elastic kernel size."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from onefit.errors import UserError
from onefit.static import layer_with


def _state(tensors: Iterable[torch.Tensor | None]) -> tuple:
    """Storage address and in-place version of each tensor: changes whenever its values may."""
    return tuple((t.data_ptr(), t._version) for t in tensors if t is not None)


def _centre(weight: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of a square kernel."""
    start = (weight.shape[-1] - size) // 2
    return weight[..., start : start + size, start : start + size]


class ElasticConv2d(nn.Module):
    """A convolution whose input/output channels and kernel size shrink at run time.

    Channels are prefixes: the active input count is read from the input tensor, the
    output count is passed to ``forward`` (default: all). With several kernel sizes,
    the weight holds the largest kernel; a smaller kernel is the centre of the next
    larger one passed through a learned ``k^2 x k^2`` matrix shared by the layer's
    channels (Cai et al., "Once-for-All", ICLR 2020, Sec. 3.2), initialised to the
    identity so that a fresh supernet starts with plain centre-cropping.

    ``depthwise=True`` makes a depthwise convolution (groups = active channels); with
    ``group_width=g`` a grouped one of ``g`` channels per group, whose number of groups
    shrinks with the channels (active channels // g). Keeping the channels per group
    fixed is what RegNet and ResNeXt scale (their "group width"), and a prefix of the
    channels is then a prefix of whole groups, each with its weights unchanged.
    ``padding`` defaults to "same" (``k // 2`` for the active kernel); a fixed padding or a
    dilation other than 1 (convolutions converted from existing models) needs a single
    kernel size, since the kernel ladder relies on "same" padding.

    Example:
        >>> conv = ElasticConv2d(8, 16, kernel_sizes=(3, 5), stride=2)
        >>> conv(torch.randn(1, 6, 8, 8), out_channels=12, kernel_size=3).shape
        torch.Size([1, 12, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: int | Sequence[int] = 1,
        *,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        padding: int | None = None,
        dilation: int = 1,
        group_width: int = 1,
    ) -> None:
        super().__init__()
        sizes = sorted({kernel_sizes} if isinstance(kernel_sizes, int) else set(kernel_sizes))
        if padding is None and dilation == 1 and any(k % 2 == 0 or k < 1 for k in sizes):
            raise UserError(f"kernel sizes must be odd and positive, got {sizes}")
        if (padding is not None or dilation != 1) and len(sizes) > 1:
            raise UserError("a fixed padding or a dilation needs a single kernel size")
        if dilation != 1 and padding is None:
            raise UserError("a dilated convolution needs its padding given explicitly")
        if depthwise and in_channels != out_channels:
            raise UserError("a depthwise convolution needs in_channels == out_channels")
        if group_width < 1 or in_channels % group_width or (group_width > 1 and not depthwise):
            raise UserError(
                f"group_width {group_width} must divide in_channels {in_channels} "
                "(with depthwise=True)"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_sizes = tuple(sizes)
        self.stride = stride
        self.depthwise = depthwise
        self.padding = padding
        self.dilation = dilation
        self.group_width = group_width
        k = sizes[-1]
        per_group = group_width if depthwise else in_channels
        self.weight = nn.Parameter(torch.empty(out_channels, per_group, k, k))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # One transform per step down the kernel ladder, e.g. "7to5" and "5to3".
        self.kernel_transforms = nn.ParameterDict(
            {
                f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                for big, small in zip(sizes[::-1], sizes[-2::-1])
            }
        )
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

        # Inference cache: the last sub-layer's contiguous weights (see active_weight).
        self._frozen = False
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    def set_frozen(self, frozen: bool) -> None:
        """Allow (or stop) reusing computed sub-layer weights; see :meth:`active_weight`."""
        self._frozen = frozen
        self._cache = None

    @classmethod
    @torch.no_grad()
    def from_conv(cls, conv: nn.Conv2d, kernel_sizes: Sequence[int] | None = None) -> ElasticConv2d:
        """An elastic copy of a plain square ``conv``, same weights: groups 1, depthwise, or
        grouped with ``in_channels == out_channels`` (its channels per group then fixed).

        ``kernel_sizes`` (odd, up to the conv's kernel) makes the kernel elastic; it needs
        "same" padding and no dilation.
        """
        k, stride, dilation = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
        padding = conv.padding
        square = all(len(set(v)) == 1 for v in (conv.kernel_size, conv.stride, conv.dilation))
        if isinstance(padding, str) or len(set(padding)) != 1 or not square:
            raise UserError(f"only square, explicitly padded convolutions convert, got {conv}")
        if conv.padding_mode != "zeros":
            raise UserError(f"only zero-padded convolutions convert, got {conv}")
        if kernel_sizes and (padding[0] != k // 2 or dilation != 1 or k % 2 == 0):
            raise UserError(f"an elastic kernel needs an odd kernel, 'same' padding, got {conv}")
        depthwise = conv.groups > 1
        if depthwise and conv.in_channels != conv.out_channels:
            raise UserError(
                f"grouped convolutions with in_channels != out_channels do not convert: {conv}"
            )
        elastic = cls(
            conv.in_channels,
            conv.out_channels,
            kernel_sizes or k,
            stride=stride,
            depthwise=depthwise,
            bias=conv.bias is not None,
            padding=None if kernel_sizes else padding[0],
            dilation=dilation,
            group_width=conv.in_channels // conv.groups if depthwise else 1,
        )
        elastic.weight.copy_(conv.weight)
        if conv.bias is not None and elastic.bias is not None:
            elastic.bias.copy_(conv.bias)
        return elastic

    @property
    def max_kernel_size(self) -> int:
        return self.kernel_sizes[-1]

    def padding_for(self, kernel_size: int) -> int:
        """The padding used with ``kernel_size``: the fixed one, else "same"."""
        return kernel_size // 2 if self.padding is None else self.padding

    def kernel(self, kernel_size: int) -> torch.Tensor:
        """The full-width weight for ``kernel_size``, transformed down from the largest."""
        if kernel_size not in self.kernel_sizes:
            raise UserError(f"kernel size {kernel_size} is not one of {list(self.kernel_sizes)}")
        weight: torch.Tensor = self.weight
        for big, small in zip(self.kernel_sizes[::-1], self.kernel_sizes[-2::-1]):
            if big <= kernel_size:
                break
            window = _centre(weight, small)
            flat = window.reshape(-1, small * small)
            weight = F.linear(flat, self.kernel_transforms[f"{big}to{small}"]).view(window.shape)
        return weight

    def active_weight(
        self, in_channels: int, out_channels: int, kernel_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the sub-layer with these sizes.

        Normally sliced (and kernel-transformed) afresh on every call, so gradients
        reach the shared weights and any change to them shows at once. Inside
        :meth:`onefit.supernets.Supernet.frozen`, without autograd, the result is kept as
        contiguous tensors and reused while the sizes stay the same, so running a
        sub-network costs what its static copy costs.
        """
        if not self._frozen or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self._slice(in_channels, out_channels, kernel_size)
        # A safety net, not the contract: data_ptr catches .to() moves and _version most
        # in-place updates (not fused optimizers or writes through .data).
        params = self._parameters
        key: tuple = (in_channels, out_channels, kernel_size, *_state(params.values()))
        if kernel_size < self.kernel_sizes[-1]:
            key += _state(self.kernel_transforms._parameters.values())
        cache = self._cache
        if cache is None or cache[0] != key:
            weight, bias = self._slice(in_channels, out_channels, kernel_size)
            bias = None if bias is None else bias.contiguous()
            cache = self._cache = (key, weight.contiguous(), bias)
        return cache[1], cache[2]

    def _slice(
        self, in_channels: int, out_channels: int, kernel_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.depthwise:
            weight = self.kernel(kernel_size)[:in_channels]
            bias = None if self.bias is None else self.bias[:in_channels]
        else:
            weight = self.kernel(kernel_size)[:out_channels, :in_channels]
            bias = None if self.bias is None else self.bias[:out_channels]
        return weight, bias

    def forward(
        self, x: torch.Tensor, out_channels: int | None = None, kernel_size: int | None = None
    ) -> torch.Tensor:
        in_channels = x.shape[1]
        if in_channels > self.in_channels:
            raise UserError(
                f"ElasticConv2d holds {self.in_channels} input channels, got {in_channels}"
            )
        if in_channels % self.group_width:
            raise UserError(
                f"a grouped convolution of {self.group_width} channels per group got "
                f"{in_channels} channels"
            )
        k = kernel_size or self.kernel_sizes[-1]
        if self.depthwise:
            weight, bias = self.active_weight(in_channels, in_channels, k)
            groups = in_channels // self.group_width
            return F.conv2d(
                x, weight, bias, self.stride, self.padding_for(k), self.dilation, groups
            )
        weight, bias = self.active_weight(in_channels, out_channels or self.out_channels, k)
        return F.conv2d(x, weight, bias, self.stride, self.padding_for(k), self.dilation)

    @torch.no_grad()
    def to_static(
        self, in_channels: int, out_channels: int | None = None, kernel_size: int | None = None
    ) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding a copy of the active weights."""
        out = in_channels if self.depthwise else (out_channels or self.out_channels)
        k = kernel_size or self.max_kernel_size
        weight, bias = self.active_weight(in_channels, out, k)
        return layer_with(
            nn.Conv2d,
            in_channels,
            out,
            k,
            stride=self.stride,
            padding=self.padding_for(k),
            dilation=self.dilation,
            groups=in_channels // self.group_width if self.depthwise else 1,
            bias=bias is not None,
            tensors={"weight": weight, "bias": bias},
        )

    def extra_repr(self) -> str:
        kind = "depthwise, " if self.depthwise else ""
        if self.group_width > 1:
            kind = f"grouped ({self.group_width} per group), "
        return (
            f"{kind}{self.in_channels}, {self.out_channels}, kernel_sizes={list(self.kernel_sizes)}"
            f", stride={self.stride}, bias={self.bias is not None}"
            + ("" if self.padding is None else f", padding={self.padding}")
            + ("" if self.dilation == 1 else f", dilation={self.dilation}")
        )
