"""What in a traced model can become elastic: coupled channels, skippable blocks, kernels.

Conversion reads a model in three steps, one module each: :mod:`~onefit.convert.tracing`
turns it into a ``torch.fx`` graph with every node's shape; :mod:`~onefit.convert.rules`
follows channels through that graph, layer type by layer type, into *channel groups*
that must shrink together; :mod:`~onefit.convert.chains` finds the residual blocks a
sub-network may skip and the chains (stages) they form. :func:`analyse` ties the three
together into one :class:`Analysis`, which :class:`~onefit.convert.ConvertedSupernet`
turns into a search space. Depthwise convolutions with odd kernels of 5 or more and
"same" padding also get an elastic kernel (3, 5, ..., k); the supernet decides that
from the layers found here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx

from onefit.convert.chains import Block, find_blocks, find_chains
from onefit.convert.rules import Layer, find_groups


@dataclass
class Analysis:
    """Everything :func:`analyse` found; groups are final (root) ids."""

    group_sizes: dict[int, int]
    static_reasons: dict[int, list[str]]  # per static group: why
    layers: list[Layer]
    blocks: list[Block]
    chains: list[list[int]]  # indices into blocks, each a run of consecutive blocks
    not_skippable: dict[str, str]  # addition node -> why it is not a skippable block
    unsupported: dict[str, str]  # node -> description of the op kept static
    group_names: dict[int, str] = field(default_factory=dict)

    def is_static(self, group: int | None) -> bool:
        return group is None or group in self.static_reasons


def analyse(gm: fx.GraphModule) -> Analysis:
    """Channel groups, layers, residual blocks and chains of a shape-propagated graph."""
    sizes, reasons, layers, unsupported = find_groups(gm)
    blocks, rejected = find_blocks(gm)
    chains = find_chains(gm, blocks)
    names: dict[int, str] = {}
    for layer in layers:
        produces = layer.kind in ("conv", "linear") or (
            layer.kind == "custom" and layer.rule is not None and not layer.rule.coupled
        )
        if produces and layer.out_group is not None:
            names.setdefault(layer.out_group, layer.name)
    # Groups in the order of their first producer, so dimensions read front to back.
    order = {group: index for index, group in enumerate(names)}
    sizes = dict(sorted(sizes.items(), key=lambda item: order.get(item[0], len(order))))
    return Analysis(
        group_sizes=sizes,
        static_reasons=reasons,
        layers=layers,
        blocks=blocks,
        chains=chains,
        not_skippable=rejected,
        unsupported=unsupported,
        group_names=names,
    )


__all__ = ["Analysis", "Block", "Layer", "analyse"]
