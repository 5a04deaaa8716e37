"""Tracing a model into a ``torch.fx`` graph, and propagating shapes through it.

Conversion reads a model as its fx graph: one node per layer call, tensor operation and
parameter read. :func:`trace` builds that graph (and says which line of the model's
``forward`` fx could not follow when it fails); :class:`NodeProfiler` runs it once on
a zero input, recording every node's output shape (``node.meta["tensor_meta"]``, what
the channel analysis reads) and its MACs.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from onefit.convert.custom_rules import find_channel_rule
from onefit.errors import UserError
from onefit.metrics.counting import flop_counter


class ConversionTracer(fx.Tracer):
    """``torch.fx`` tracer that keeps layer norms, stochastic depth and custom layers whole.

    Subclasses of ``nn.LayerNorm`` (ConvNeXt's ``LayerNorm2d``) would otherwise be
    traced into a ``layer_norm`` call with a constant width; torchvision's
    ``StochasticDepth`` would be traced with the train/eval mode of the moment fixed; a
    layer with a registered :class:`~onefit.convert.ChannelRule` is one call, whose
    tensors the rule slices.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, nn.LayerNorm) or type(m).__name__ == "StochasticDepth":
            return True
        if find_channel_rule(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """The fx graph of ``model`` (which it shares its modules with).

    Raises ``ValueError`` naming the model, fx's complaint and the line of ``forward``
    it stopped at (data-dependent control flow, usually) when the model cannot be traced.
    """
    tracer = ConversionTracer()
    try:
        graph = tracer.trace(model)
    except Exception as error:  # fx raises many kinds; the user needs one message
        raise UserError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(error).__name__}: "
            f"{error}){_where(error)}; elasticize needs a model whose forward has no "
            "data-dependent Python control flow"
        ) from None
    return fx.GraphModule(model, graph)


def _where(error: BaseException) -> str:
    """`` at FILE:LINE: `source` `` of the innermost frame outside torch and this module."""
    inside = (Path(torch.__file__).parent, Path(__file__).parent)
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if not any(path.is_relative_to(folder) for folder in inside):
            source = f": `{frame.line.strip()}`" if frame.line else ""
            return f" at {path.name}:{frame.lineno}{source}"
    return ""


class NodeProfiler(fx.Interpreter):
    """Runs the graph once, recording each node's output shape and its MACs.

    Shapes are also written to ``node.meta["tensor_meta"]`` (as fx's ``ShapeProp``
    does), where the channel analysis reads them.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.macs: dict[str, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        with flop_counter() as counter:
            result = super().run_node(n)
        self.macs[n.name] = int(counter.get_total_flops() // 2)
        if isinstance(result, torch.Tensor):
            self.shapes[n.name] = tuple(result.shape)
            n.meta["tensor_meta"] = _extract_tensor_metadata(result)
        return result


def node_shape(node: fx.Node) -> tuple[int, ...] | None:
    """The output shape :class:`NodeProfiler` recorded for ``node`` (None: not a tensor)."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def describe(node: fx.Node, root: nn.Module) -> str:
    """A short name of what a node computes, for the report."""
    if node.op == "call_module":
        return type(root.get_submodule(str(node.target))).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        target = node.target
        return getattr(target, "__name__", str(target))
    return node.op
