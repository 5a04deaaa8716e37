"""The entry point, :func:`elasticize`: a supernet from an existing model, by its kind.

A torchvision ``VisionTransformer`` and a Hugging Face BERT classifier map onto onefit's
own ``vit`` and ``bert`` families; every other model is traced and converted by
:class:`~onefit.convert.ConvertedSupernet`. All of them read one
:class:`~onefit.convert.ConversionOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from onefit.convert.bert import bert_from_transformers, is_transformers_bert
from onefit.convert.options import ConversionOptions
from onefit.convert.supernet import ConvertedSupernet
from onefit.convert.transformers import is_torchvision_vit, vit_from_torchvision
from onefit.errors import UserError
from onefit.supernets import Supernet, create_supernet


def elasticize(
    model: nn.Module | str,
    example_input: torch.Tensor,
    options: ConversionOptions | Mapping[str, Any] | None = None,
    *,
    verbose: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Supernet:
    """A supernet over ``model``, whose largest sub-network computes what ``model`` does.

    ``options`` (a :class:`~onefit.convert.ConversionOptions`, or a dict of its fields)
    says what becomes elastic; its fields may also be given as keyword arguments
    (``width_ratios=..., width_mode=...``), which override ``options``.

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
    example's). A layer of your own becomes elastic once
    :func:`~onefit.convert.register_channel_rule` says how its channels are coupled.

    The supernet trains, searches and exports like any onefit family; ``net.extract``
    gives a plain ``torch.fx.GraphModule`` of ``torch.nn`` layers, with the original
    layer names, fewer channels and the skipped blocks removed.

    A torchvision ``VisionTransformer`` becomes onefit's elastic ViT (family ``vit``:
    embedding width, depth, heads and MLP width per layer) holding its weights;
    ``width_ratios`` then sets the embedding and MLP width choices, ``depth=False``
    keeps every layer, ``kernel`` and ``width_mode`` do not apply. A Hugging Face
    ``BertForSequenceClassification`` becomes the ``bert`` family the same way; its
    ``example_input`` is a batch of token ids ``(N, sequence length)``. Their
    ``net.spec`` records the options under ``"options"``.

    ``model`` may also be the import path of a function that builds it,
    ``"package.module:function"`` (called with ``model_kwargs``): the supernet is then
    the ``model`` family, whose ``spec`` records that recipe, so a training run of it
    can be reopened for search, export and report in any later process.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                       nn.Flatten(), nn.Linear(16, 4))
        >>> net = elasticize(model, torch.zeros(1, 3, 8, 8), width_ratios=[0.5], verbose=False)
        >>> net.space["w.0"].choices, net.options.width_ratios
        ((8, 16), (0.5,))
    """
    opts = ConversionOptions.build(options, **kwargs)
    if isinstance(model, str):
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
            raise UserError("a model given by import path needs an image batch (N, C, H, W)")
        # Built through the registry, so the supernet's spec is the recipe that rebuilds it.
        net = create_supernet(
            "model", factory=model, factory_kwargs=dict(model_kwargs or {}),
            input_shape=list(example_input.shape[1:]), options=opts.to_dict(),
        )  # fmt: skip
        if verbose:
            print(net.report)
        return net
    if model_kwargs is not None:
        raise UserError("model_kwargs apply to a model given by its import path")
    if is_transformers_bert(model):
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 2:
            raise UserError("a BERT model's example_input is token ids of shape (N, length)")
        if opts.resolutions is not None:
            raise UserError("a BERT supernet has one sequence length: leave resolutions unset")
        ratios = opts.transformer_width_ratios()
        bert = bert_from_transformers(
            model, int(example_input.shape[1]), width_ratios=ratios, mlp_ratios=ratios,
            depth_ratios=opts.transformer_depth_ratios(), round_to=opts.round_to,
            sort=opts.sort,
        )  # fmt: skip
        _record(bert, opts)
        if verbose:
            print(bert.report)
        return bert
    if is_torchvision_vit(model):
        ratios = opts.transformer_width_ratios()
        vit = vit_from_torchvision(
            model, width_ratios=ratios, mlp_ratios=ratios,
            depth_ratios=opts.transformer_depth_ratios(), round_to=opts.round_to,
            resolutions=opts.resolutions, sort=opts.sort,
        )  # fmt: skip
        _record(vit, opts)
        if verbose:
            print(vit.report)
        return vit
    net = ConvertedSupernet(model, example_input, opts)
    if verbose:
        print(net.report)
    return net


def _record(net: Supernet, options: ConversionOptions) -> None:
    """Add ``options`` to ``net.spec`` (JSON), beside the family arguments it rebuilds from."""
    if net.spec is not None:
        net.spec = {**net.spec, "options": options.to_dict()}
