"""Elastic BERT encoder for sequence classification (HAT / InstaTune / SortedNet dimensions).

The architecture of Devlin et al., "BERT", NAACL 2019, as Hugging Face ``transformers``
builds it (``BertForSequenceClassification``): word, position and token-type embeddings
with a layer norm; post-norm encoder layers (self-attention with separate query, key
and value projections, then a GELU MLP, each added to its input and layer-normed); a
tanh pooler on the first token; a linear classifier. Use
:func:`onefit.convert.bert_from_transformers` to start from a ``transformers`` model.

Search space (dimension names):
    ``w``     hidden width, shared by every layer (a prefix of the embedding)
    ``d``     number of encoder layers (the first ``d`` are kept)
    ``h.i``   attention heads of layer ``i`` (a prefix of heads)
    ``m.i``   MLP (intermediate) width of layer ``i`` (a prefix of units)
    ``r``     the sequence length (one choice; inputs are token ids ``(N, r)``)

Inputs are full-length sequences of token ids, token type 0 and no padding mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from onefit.elastic import ElasticLinear
from onefit.elastic.channels import head_order, permute_, sort_mlp_
from onefit.elastic.norm import prefix_layer_norm, static_layer_norm
from onefit.errors import UserError
from onefit.metrics.counting import Cost, encoder_layer_cost, linear_cost
from onefit.space import ArchConfig, SearchSpace
from onefit.static import Pooler, PostNormEncoderBlock, TokenEmbedding
from onefit.supernets.arguments import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_HEADS,
    MAX_SEQUENCE,
    MAX_VOCAB,
    MAX_WIDTH,
    check_memory,
    check_number,
)
from onefit.supernets.base import Supernet, check_choices, check_positive_int
from onefit.supernets.inputs import TokenInput
from onefit.supernets.registry import register_supernet


class ElasticBertLayer(nn.Module):
    """A post-norm BERT layer whose heads, MLP width and hidden width are elastic."""

    def __init__(self, width: int, heads: int, head_dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.max_heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        # Rows ordered (head, head_dim): a prefix of rows is a prefix of heads.
        self.query = ElasticLinear(width, inner)
        self.key = ElasticLinear(width, inner)
        self.value = ElasticLinear(width, inner)
        self.attention_out = ElasticLinear(inner, width)
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.fc1 = ElasticLinear(width, hidden)
        self.fc2 = ElasticLinear(hidden, width)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.active_heads = heads
        self.active_hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        heads, inner = self.active_heads, self.active_heads * self.head_dim

        def split(projection: ElasticLinear) -> torch.Tensor:
            out = projection(x, inner).view(batch, tokens, heads, self.head_dim)
            return out.transpose(1, 2)

        attention = F.scaled_dot_product_attention(split(self.query), split(self.key),
                                                   split(self.value))  # fmt: skip
        attention = attention.transpose(1, 2).reshape(batch, tokens, inner)
        x = prefix_layer_norm(self.norm1, x + self.attention_out(attention, width))
        hidden = F.gelu(self.fc1(x, self.active_hidden))
        return prefix_layer_norm(self.norm2, x + self.fc2(hidden, width))

    @torch.no_grad()
    def to_static(self, width: int, heads: int, hidden: int) -> PostNormEncoderBlock:
        inner = heads * self.head_dim
        return PostNormEncoderBlock(
            self.query.to_static(width, inner),
            self.key.to_static(width, inner),
            self.value.to_static(width, inner),
            self.attention_out.to_static(inner, width),
            static_layer_norm(self.norm1, width),
            self.fc1.to_static(width, hidden),
            self.fc2.to_static(hidden, width),
            static_layer_norm(self.norm2, width),
            heads,
            self.head_dim,
        )

    def cost(self, width: int, heads: int, hidden: int, tokens: int) -> Cost:
        return encoder_layer_cost(width, heads, self.head_dim, hidden, tokens)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Order heads and MLP units by the L1 norm of the weights reading them."""
        sort_mlp_(self.fc1, self.fc2)
        rows = head_order(self.attention_out.weight, self.max_heads, self.head_dim)
        tensors = [(p.weight, 0) for p in (self.query, self.key, self.value)]
        tensors += [(p.bias, 0) for p in (self.query, self.key, self.value)]
        permute_([*tensors, (self.attention_out.weight, 1)], rows)


class ElasticBert(Supernet):
    """A BERT sequence classifier supernet (see the module docstring).

    Args:
        num_classes: labels of the classifier.
        vocab_size, max_positions, type_vocab_size: the embedding tables.
        image_size: the sequence length (named as the trainer passes a dataset's size).
        embed_dims, depths, num_heads, mlp_dims: the choices of each dimension.
        head_dim: width of one attention head; norm_eps: of every layer norm.
        in_channels: must be 1 (a sequence of token ids); accepted for the trainer.

    Example:
        >>> net = ElasticBert(num_classes=2, vocab_size=50, image_size=12)
        >>> cfg = net.set_active(net.space.smallest())
        >>> net(torch.zeros(3, 12, dtype=torch.long)).shape
        torch.Size([3, 2])
        >>> from onefit.metrics import count
        >>> net.cost(cfg) == count(net.extract(cfg), (12,), dtype=torch.long)
        True
    """

    def __init__(
        self,
        *,
        num_classes: int = 2,
        vocab_size: int = 1000,
        image_size: int = 32,
        max_positions: int | None = None,
        type_vocab_size: int = 2,
        embed_dims: Sequence[int] = (32, 48, 64),
        depths: Sequence[int] = (2, 3, 4),
        num_heads: Sequence[int] = (2, 3, 4),
        mlp_dims: Sequence[int] = (64, 96, 128),
        head_dim: int = 16,
        norm_eps: float = 1e-12,
        in_channels: int = 1,
        resolutions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value, maximum in [
            ("num_classes", num_classes, MAX_CLASSES),
            ("vocab_size", vocab_size, MAX_VOCAB),
            ("image_size", image_size, MAX_SEQUENCE),
            ("type_vocab_size", type_vocab_size, MAX_HEADS),
            ("head_dim", head_dim, MAX_WIDTH),
            ("in_channels", in_channels, MAX_CHANNELS),
        ]:
            check_positive_int(name, value, maximum)
        if in_channels != 1:
            raise UserError(f"a BERT supernet reads token ids (in_channels=1), got {in_channels}")
        if resolutions is not None and (
            not isinstance(resolutions, (list, tuple)) or list(resolutions) != [image_size]
        ):
            raise UserError(
                f"a BERT supernet has one sequence length (image_size={image_size}); "
                f"resolutions must be [{image_size}] or left out, got {resolutions!r}"
            )
        max_positions = image_size if max_positions is None else max_positions
        check_positive_int("max_positions", max_positions, MAX_SEQUENCE)
        if image_size > max_positions:
            raise UserError(f"sequence length {image_size} exceeds max_positions {max_positions}")
        embed = check_choices("embed_dims", embed_dims, integer=True, minimum=1, maximum=MAX_WIDTH)
        depth_choices = check_choices("depths", depths, integer=True, minimum=1, maximum=MAX_DEPTH)
        heads = check_choices("num_heads", num_heads, integer=True, minimum=1, maximum=MAX_HEADS)
        hidden = check_choices("mlp_dims", mlp_dims, integer=True, minimum=1, maximum=MAX_WIDTH)
        norm_eps = check_number("norm_eps", norm_eps, maximum=1, low_open=True)
        width = max(embed)
        per_layer = width * (4 * max(heads) * head_dim + 2 * max(hidden) + 6)
        check_memory(
            "bert",
            (vocab_size + max_positions + type_vocab_size + width + 2) * width
            + max(depth_choices) * per_layer + (width + 1) * num_classes,
            ["num_classes", "vocab_size", "max_positions", "embed_dims", "depths", "num_heads",
             "head_dim", "mlp_dims"],
        )  # fmt: skip
        self.num_classes, self.in_channels = num_classes, 1
        self.seq_len, self.head_dim = image_size, head_dim
        self.word = nn.Embedding(vocab_size, width)
        self.positions = nn.Parameter(torch.zeros(max_positions, width))
        self.token_types = nn.Parameter(torch.zeros(type_vocab_size, width))
        self.embed_norm = nn.LayerNorm(width, eps=norm_eps)
        self.layer_list = [
            ElasticBertLayer(width, max(heads), head_dim, max(hidden), norm_eps)
            for _ in range(max(depth_choices))
        ]
        self.layers = nn.ModuleList(self.layer_list)
        self.pooler = ElasticLinear(width, width)
        self.classifier = ElasticLinear(width, num_classes)
        n = len(self.layer_list)
        self.space = SearchSpace(
            {
                "w": embed,
                "d": depth_choices,
                **{f"h.{i}": heads for i in range(n)},
                **{f"m.{i}": hidden for i in range(n)},
                "r": (image_size,),
            }
        )
        for table in (self.word.weight, self.positions, self.token_types):
            nn.init.trunc_normal_(table, std=0.02)
        self._width, self._depth = width, n
        self.input_spec = TokenInput(length=self.seq_len, vocab_size=vocab_size)
        self.set_active(self.space.largest())

    # -- running ------------------------------------------------------------------------------
    def _activate(self, config: ArchConfig) -> None:
        self._width, self._depth = int(config["w"]), int(config["d"])
        for i, layer in enumerate(self.layer_list):
            layer.active_heads = int(config[f"h.{i}"])
            layer.active_hidden = int(config[f"m.{i}"])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        width, tokens = self._width, x.shape[1]
        embedded = F.embedding(x, self.word.weight[:, :width])
        embedded = embedded + self.positions[:tokens, :width] + self.token_types[0, :width]
        hidden = prefix_layer_norm(self.embed_norm, embedded)
        for layer in self.layer_list[: self._depth]:
            hidden = layer(hidden)
        pooled = torch.tanh(self.pooler(hidden[:, 0], width))
        return self.classifier(pooled)

    @torch.no_grad()
    def _build_static(self, config: ArchConfig) -> nn.Module:
        width = int(config["w"])
        embedding = nn.Embedding(self.word.num_embeddings, width)
        embedding.weight.copy_(self.word.weight[:, :width])
        layers = [
            layer.to_static(width, int(config[f"h.{i}"]), int(config[f"m.{i}"]))
            for i, layer in enumerate(self.layer_list[: int(config["d"])])
        ]
        return nn.Sequential(
            TokenEmbedding(
                embedding,
                self.positions[:, :width],
                self.token_types[:, :width],
                static_layer_norm(self.embed_norm, width),
            ),
            *layers,
            Pooler(self.pooler.to_static(width, width)),
            self.classifier.to_static(width),
        )

    def cost(self, config: Mapping[str, Any]) -> Cost:
        config = self.space.validate(config)
        width, tokens = int(config["w"]), self.seq_len
        tables = self.word.num_embeddings + self.positions.shape[0] + self.token_types.shape[0]
        total = Cost(macs=0, params=tables * width + 2 * width)
        for i, layer in enumerate(self.layer_list[: int(config["d"])]):
            total += layer.cost(width, int(config[f"h.{i}"]), int(config[f"m.{i}"]), tokens)
        total += linear_cost(width, width)  # pooler
        return total + linear_cost(width, self.num_classes)

    def units(self, config: Mapping[str, Any]) -> list[str]:
        """Not available yet: latency tables time layers on image inputs."""
        raise UserError(
            "latency lookup tables are not supported for the bert family yet; search it "
            "on MACs and parameters, or measure latency on extracted models"
        )


@register_supernet("bert")
def bert(**kwargs: Any) -> ElasticBert:
    """Elastic BERT encoder classifier (depth, heads, MLP width, hidden width)."""
    return ElasticBert(**kwargs)
