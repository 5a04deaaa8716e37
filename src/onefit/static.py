"""The few plain modules an extracted sub-network needs beyond ``torch.nn``.

An extracted model is an ``nn.Sequential`` of standard layers (``Conv2d``,
``BatchNorm2d``, activations, ``Linear``) plus these few modules. They hold no
elastic state and no reference to a supernet, script with TorchScript, and export to
ONNX as ordinary graphs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

LayerT = TypeVar("LayerT", bound=nn.Module)

# Extraction overwrites every tensor of the layers it builds, so it builds them on the
# meta device (no memory, no random initialisation) and hands them their tensors. True
# restores the old way (initialise, then copy in), for the side-by-side benchmark.
INITIALISE_EXTRACTED_LAYERS = False


def layer_with(
    cls: type[LayerT], *args: Any, tensors: Mapping[str, torch.Tensor | None], **kwargs: Any
) -> LayerT:
    """``cls(*args, **kwargs)`` holding copies of ``tensors``, one per parameter and buffer.

    Built without initialising anything: on the meta device, then each parameter and
    buffer replaced by a copy of its tensor in ``tensors`` (same device and dtype as
    that tensor). For the static layers of an extracted sub-network, whose every tensor
    comes from the supernet. ``cls`` must take ``device``.

    Example:
        >>> w = torch.ones(2, 3)
        >>> layer = layer_with(nn.Linear, 3, 2, bias=False, tensors={"weight": w})
        >>> layer(torch.ones(1, 3)).tolist()
        [[3.0, 3.0]]
    """
    if INITIALISE_EXTRACTED_LAYERS:
        like = next(t for t in tensors.values() if t is not None)
        module = cls(*args, **kwargs, device=like.device)
        with torch.no_grad():
            for name, tensor in module.state_dict(keep_vars=True).items():
                source = tensors[name]
                if source is not None:
                    tensor.copy_(source)
        return module
    module = cls(*args, **kwargs, device="meta")
    for name, param in module._parameters.items():
        if param is not None:
            copied = _copy(tensors[name], param)
            module._parameters[name] = nn.Parameter(copied, requires_grad=param.requires_grad)
    for name, buffer in module._buffers.items():
        if buffer is not None:
            module._buffers[name] = _copy(tensors[name], buffer)
    return module


def _copy(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if tensor is None:
        raise ValueError("layer_with needs a tensor for every parameter and buffer")
    if tensor.shape != like.shape:  # what copy_ used to refuse
        raise ValueError(f"layer_with: a tensor of {list(tensor.shape)} for {list(like.shape)}")
    return tensor.detach().clone(memory_format=torch.contiguous_format)


# The modules extracted models are built from (helpers such as layer_with are not).
__all__ = [
    "ClassToken",
    "EncoderBlock",
    "LayerNorm2d",
    "PatchEmbed",
    "Pooler",
    "PostNormEncoderBlock",
    "Residual",
    "SqueezeExcite",
    "TokenEmbedding",
]


class Residual(nn.Module):
    """``activation(body(x) + shortcut(x))``: MobileNet and ResNet residual blocks alike.

    Example:
        >>> block = Residual(nn.Conv2d(4, 4, 3, padding=1))
        >>> block(torch.zeros(1, 4, 5, 5)).shape
        torch.Size([1, 4, 5, 5])
    """

    def __init__(
        self,
        body: nn.Module,
        shortcut: nn.Module | None = None,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.activation = activation if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in MobileNetV3: ``x * hardsigmoid(expand(relu(reduce(mean(x)))))``.

    Example:
        >>> se = SqueezeExcite(16, 8)
        >>> se(torch.randn(2, 16, 4, 4)).shape
        torch.Size([2, 16, 4, 4])
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True, device=device, dtype=dtype)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.expand(F.relu(self.reduce(scale))))
        return x * scale


class PatchEmbed(nn.Module):
    """Vision-transformer input: patches by a strided conv, a class token, positions.

    Example:
        >>> embed = PatchEmbed(nn.Conv2d(3, 8, 4, stride=4), torch.zeros(1, 1, 8),
        ...                    torch.zeros(1, 5, 8))
        >>> embed(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, proj: nn.Conv2d, cls_token: torch.Tensor, pos_embed: torch.Tensor) -> None:
        super().__init__()
        self.proj = proj
        self.cls_token = nn.Parameter(cls_token.detach().clone())
        self.pos_embed = nn.Parameter(pos_embed.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block with ``heads`` heads of ``head_dim`` each.

    ``x + proj(attention(norm1(x)))``, then ``x + fc2(gelu(fc1(norm2(x))))``. The
    attention width ``heads * head_dim`` need not equal the embedding width, which is
    why this is not ``nn.TransformerEncoderLayer``.
    """

    def __init__(
        self,
        norm1: nn.LayerNorm,
        qkv: nn.Linear,
        proj: nn.Linear,
        norm2: nn.LayerNorm,
        fc1: nn.Linear,
        fc2: nn.Linear,
        heads: int,
        head_dim: int,
    ) -> None:
        super().__init__()
        self.norm1, self.qkv, self.proj = norm1, qkv, proj
        self.norm2, self.fc1, self.fc2 = norm2, fc1, fc2
        self.heads = heads
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attention.transpose(1, 2).reshape(batch, tokens, -1))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ClassToken(nn.Module):
    """The class token of a token sequence: ``x[:, 0]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an ``(N, C, H, W)`` map (as in ConvNeXt).

    Example:
        >>> LayerNorm2d(4)(torch.randn(1, 4, 3, 3)).shape
        torch.Size([1, 4, 3, 3])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class TokenEmbedding(nn.Module):
    """BERT's input: word + position + token-type-0 embeddings, layer-normed.

    Example:
        >>> embed = TokenEmbedding(nn.Embedding(10, 4), torch.zeros(6, 4), torch.zeros(2, 4),
        ...                        nn.LayerNorm(4))
        >>> embed(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 4])
    """

    def __init__(
        self, word: nn.Embedding, positions: torch.Tensor, token_types: torch.Tensor,
        norm: nn.LayerNorm,
    ) -> None:  # fmt: skip
        super().__init__()
        self.word = word
        self.positions = nn.Parameter(positions.detach().clone())
        self.token_types = nn.Parameter(token_types.detach().clone())
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.word(x) + self.positions[: x.shape[1]] + self.token_types[0]
        return self.norm(embedded)


class PostNormEncoderBlock(nn.Module):
    """BERT's post-norm layer: ``norm1(x + out(attention(x)))``, then
    ``norm2(x + fc2(gelu(fc1(x))))``, with ``heads`` heads of ``head_dim`` each."""

    def __init__(
        self,
        query: nn.Linear,
        key: nn.Linear,
        value: nn.Linear,
        attention_out: nn.Linear,
        norm1: nn.LayerNorm,
        fc1: nn.Linear,
        fc2: nn.Linear,
        norm2: nn.LayerNorm,
        heads: int,
        head_dim: int,
    ) -> None:
        super().__init__()
        self.query, self.key, self.value = query, key, value
        self.attention_out, self.norm1 = attention_out, norm1
        self.fc1, self.fc2, self.norm2 = fc1, fc2, norm2
        self.heads = heads
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q = self.query(x).view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)
        k = self.key(x).view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)
        v = self.value(x).view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)
        attention = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        x = self.norm1(x + self.attention_out(attention.reshape(batch, tokens, -1)))
        return self.norm2(x + self.fc2(F.gelu(self.fc1(x))))


class Pooler(nn.Module):
    """BERT's pooler: ``tanh(dense(x[:, 0]))``."""

    def __init__(self, dense: nn.Linear) -> None:
        super().__init__()
        self.dense = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))
