"""An elastic BERT from a Hugging Face ``transformers`` sequence classifier.

``BertForSequenceClassification`` maps one-to-one onto onefit's ``bert`` family: the
embeddings, each layer's query/key/value/output projections, MLP and layer norms, the
pooler and the classifier are copied into an :class:`~onefit.supernets.bert.ElasticBert`
whose largest config has exactly the original's sizes (the model must be built locally,
e.g. from a ``BertConfig``: nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from onefit.convert.report import ConversionReport, ReportRow
from onefit.convert.supernet import width_choices
from onefit.convert.transformers import count_choices, finish_conversion
from onefit.errors import UserError
from onefit.supernets.bert import ElasticBert


def is_transformers_bert(model: nn.Module) -> bool:
    """True for ``transformers``' ``BertForSequenceClassification`` (by structure)."""
    return type(model).__name__ == "BertForSequenceClassification" and hasattr(model, "bert")


def bert_from_transformers(
    model: nn.Module,
    seq_len: int,
    *,
    width_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    depth_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    head_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    mlp_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    round_to: int = 8,
    sort: bool = True,
) -> ElasticBert:
    """An elastic BERT holding ``model``'s weights, for sequences of ``seq_len`` tokens.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
        ...                     num_attention_heads=2, intermediate_size=64, num_labels=3)
        >>> hf = BertForSequenceClassification(config).eval()
        >>> net = bert_from_transformers(hf, seq_len=8).eval()
        >>> ids = torch.randint(0, 50, (2, 8))
        >>> bool((net(ids) - hf(input_ids=ids).logits).abs().max() < 1e-5)
        True
    """
    config: Any = model.config
    if getattr(config, "hidden_act", "gelu") != "gelu":
        raise UserError(f"only GELU BERT models convert, got hidden_act={config.hidden_act!r}")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise UserError("only absolute position embeddings convert")
    width, heads = int(config.hidden_size), int(config.num_attention_heads)
    layers, hidden = int(config.num_hidden_layers), int(config.intermediate_size)

    kwargs: dict[str, Any] = {
        "num_classes": int(config.num_labels),
        "vocab_size": int(config.vocab_size),
        "image_size": int(seq_len),
        "max_positions": int(config.max_position_embeddings),
        "type_vocab_size": int(config.type_vocab_size),
        "embed_dims": width_choices(width, width_ratios, round_to),
        "depths": count_choices(layers, depth_ratios),
        "num_heads": count_choices(heads, head_ratios),
        "mlp_dims": width_choices(hidden, mlp_ratios, round_to),
        "head_dim": width // heads,
        "norm_eps": float(config.layer_norm_eps),
    }
    reference = next(model.parameters())
    net = ElasticBert(**kwargs).to(device=reference.device, dtype=reference.dtype)
    finish_conversion(net, "bert", kwargs, _copy_weights, model, sort)
    net.report = _report(net)  # type: ignore[assignment]
    return net


@torch.no_grad()
def _copy_weights(model: Any, net: ElasticBert) -> None:
    bert = model.bert
    embeddings = bert.embeddings
    net.word.weight.copy_(embeddings.word_embeddings.weight)
    net.positions.copy_(embeddings.position_embeddings.weight)
    net.token_types.copy_(embeddings.token_type_embeddings.weight)
    net.embed_norm.load_state_dict(embeddings.LayerNorm.state_dict())
    for source, layer in zip(bert.encoder.layer, net.layer_list):
        attention = source.attention
        layer.query.load_state_dict(attention.self.query.state_dict())
        layer.key.load_state_dict(attention.self.key.state_dict())
        layer.value.load_state_dict(attention.self.value.state_dict())
        layer.attention_out.load_state_dict(attention.output.dense.state_dict())
        layer.norm1.load_state_dict(attention.output.LayerNorm.state_dict())
        layer.fc1.load_state_dict(source.intermediate.dense.state_dict())
        layer.fc2.load_state_dict(source.output.dense.state_dict())
        layer.norm2.load_state_dict(source.output.LayerNorm.state_dict())
    if bert.pooler is None:
        raise UserError("the model has no pooler (add_pooling_layer=False): not convertible")
    net.pooler.load_state_dict(bert.pooler.dense.state_dict())
    net.classifier.load_state_dict(model.classifier.state_dict())


def _report(net: ElasticBert) -> ConversionReport:
    rows = [
        ReportRow("bert.embeddings", "Embedding+LayerNorm", "channels: w", "tokens: fixed length"),
    ]
    n = len(net.layer_list)
    for i in range(n):
        prefix = f"bert.encoder.layer.{i}"
        depth = f"depth: d (layer {i + 1} of {n})"
        rows += [
            ReportRow(
                f"{prefix}.attention.self", "BertSelfAttention", f"in: w, heads: h.{i}, {depth}", ""
            ),
            ReportRow(
                f"{prefix}.attention.output", "Linear+LayerNorm", f"in: h.{i}, out: w, {depth}", ""
            ),
            ReportRow(f"{prefix}.intermediate.dense", "Linear", f"in: w, out: m.{i}, {depth}", ""),
            ReportRow(f"{prefix}.output", "Linear+LayerNorm", f"in: m.{i}, out: w, {depth}", ""),
        ]
    rows += [
        ReportRow("bert.pooler.dense", "Linear", "in: w, out: w", ""),
        ReportRow("classifier", "Linear", "in: w", "out: model output"),
    ]
    return ConversionReport.of("BertForSequenceClassification", rows, net.space)
