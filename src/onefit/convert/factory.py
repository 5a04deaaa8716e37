"""The entry point, :func:`elasticize`: a supernet from an existing model, by its kind.

A torchvision ``VisionTransformer`` and a Hugging Face BERT classifier map onto onefit's
own ``vit`` and ``bert`` families; every other model is traced and converted by
:class:`~onefit.convert.ConvertedSupernet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from onefit.convert.bert import bert_from_transformers, is_transformers_bert
from onefit.convert.supernet import ConvertedSupernet
from onefit.convert.transformers import is_torchvision_vit, vit_from_torchvision
from onefit.supernets import Supernet


def elasticize(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    width_ratios: Sequence[float] | None = None,
    round_to: int = 8,
    depth: bool = True,
    kernel: bool = True,
    resolutions: Sequence[int] | None = None,
    sort: bool = True,
    width_mode: str = "group",
    verbose: bool = True,
) -> Supernet:
    """A supernet over ``model``, whose largest sub-network computes what ``model`` does.

    ``model`` is traced with ``torch.fx`` (it is copied, never changed); channels that
    must shrink together are found from the graph, and each such group gets a width
    dimension with choices ``width_ratios`` x its channels rounded to ``round_to``
    (default 0.25, 0.5, 0.75, 1; for transformers 0.5, 0.75, 1); ``width_mode="global"``
    ties every group to one width ratio ``w`` instead (slimmable networks: a much
    smaller space, which a short fine-tuning covers far better).
    Chains of residual blocks get a depth dimension (``depth``), depthwise convolutions
    with kernels of 5 or more an elastic kernel (``kernel``). Channels are re-ordered by
    importance (``sort``) so that narrow sub-networks keep the most useful ones.
    Layers that cannot change (model input and output, grouped convolutions, unknown
    operations) stay static; ``net.report`` says which and why, and is printed when
    ``verbose``. ``resolutions`` lists the input sides to search (default: the
    example's).

    The supernet trains, searches and exports like any onefit family; ``net.extract``
    gives a plain ``torch.fx.GraphModule`` of ``torch.nn`` layers, with the original
    layer names, fewer channels and the skipped blocks removed.

    A torchvision ``VisionTransformer`` becomes onefit's elastic ViT (family ``vit``:
    embedding width, depth, heads and MLP width per layer) holding its weights;
    ``width_ratios`` then sets the embedding and MLP width choices, ``depth=False``
    keeps every layer, ``kernel`` does not apply. A Hugging Face
    ``BertForSequenceClassification`` becomes the ``bert`` family the same way; its
    ``example_input`` is a batch of token ids ``(N, sequence length)``.
    """
    cnn_ratios = width_ratios or (0.25, 0.5, 0.75, 1.0)
    transformer_ratios = width_ratios or (0.5, 0.75, 1.0)
    depth_ratios = (0.5, 0.75, 1.0) if depth else (1.0,)
    if is_transformers_bert(model):
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 2:
            raise ValueError("a BERT model's example_input is token ids of shape (N, length)")
        if resolutions is not None:
            raise ValueError("a BERT supernet has one sequence length: leave resolutions unset")
        bert = bert_from_transformers(
            model, int(example_input.shape[1]), width_ratios=transformer_ratios,
            mlp_ratios=transformer_ratios, depth_ratios=depth_ratios, round_to=round_to,
            sort=sort,
        )  # fmt: skip
        if verbose:
            print(bert.report)
        return bert
    if is_torchvision_vit(model):
        vit = vit_from_torchvision(
            model, width_ratios=transformer_ratios, mlp_ratios=transformer_ratios,
            depth_ratios=depth_ratios, round_to=round_to, resolutions=resolutions, sort=sort,
        )  # fmt: skip
        if verbose:
            print(vit.report)
        return vit
    net = ConvertedSupernet(
        model,
        example_input,
        width_ratios=cnn_ratios,
        round_to=round_to,
        depth=depth,
        kernel=kernel,
        resolutions=resolutions,
        sort=sort,
        width_mode=width_mode,
    )
    if verbose:
        print(net.report)
    return net
