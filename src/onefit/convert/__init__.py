"""Make a supernet from an existing model (BootstrapNAS, InstaTune).

Example:
    >>> import torch, onefit
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    >>> net = onefit.elasticize(model, torch.randn(2, 3, 16, 16), verbose=False)
    >>> net.space.names
    ['w.0', 'r']
    >>> torch.allclose(net(torch.ones(1, 3, 16, 16)), model.eval()(torch.ones(1, 3, 16, 16)))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from onefit.convert.report import ConversionReport, ReportRow
from onefit.convert.supernet import ConvertedSupernet, width_choices


def elasticize(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    width_ratios: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    round_to: int = 8,
    depth: bool = True,
    kernel: bool = True,
    resolutions: Sequence[int] | None = None,
    sort: bool = True,
    verbose: bool = True,
) -> ConvertedSupernet:
    """A supernet over ``model``, whose largest sub-network computes what ``model`` does.

    ``model`` is traced with ``torch.fx`` (it is copied, never changed); channels that
    must shrink together are found from the graph, and each such group gets a width
    dimension with choices ``width_ratios`` x its channels rounded to ``round_to``.
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
    """
    net = ConvertedSupernet(
        model,
        example_input,
        width_ratios=width_ratios,
        round_to=round_to,
        depth=depth,
        kernel=kernel,
        resolutions=resolutions,
        sort=sort,
    )
    if verbose:
        print(net.report)
    return net


__all__ = ["ConversionReport", "ConvertedSupernet", "ReportRow", "elasticize", "width_choices"]
