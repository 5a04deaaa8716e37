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
    tensors the rule slices. ``leaves`` (qualified names) are kept whole too: the
    modules an earlier attempt could not trace into.
    """

    def __init__(self, leaves: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.leaves = leaves
        self.failed_in: str | None = None  # the innermost module a failure came from

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaves:
            return True
        if isinstance(m, nn.LayerNorm) or type(m).__name__ == "StochasticDepth":
            return True
        if find_channel_rule(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # raised inside m's forward (or deeper)
                self.failed_in = self.path_of_module(m)
            raise


# Each untraceable module costs one more attempt; a model has far fewer than this.
MAX_UNTRACEABLE_MODULES = 500


def trace(model: nn.Module) -> fx.GraphModule:
    """The fx graph of ``model`` (which it shares its modules with).

    A submodule whose ``forward`` fx cannot follow (data-dependent Python control flow,
    as in timm's dynamic "same" padding) becomes one opaque call, its node marked
    ``node.meta["untraceable"]`` with the reason, and the rest of the model is traced.
    Raises ``ValueError`` naming the model, fx's complaint and the line of ``forward``
    it stopped at when the model's own ``forward`` cannot be traced.
    """
    leaves: dict[str, str] = {}
    while True:
        tracer = ConversionTracer(frozenset(leaves))
        try:
            graph = tracer.trace(model)
            break
        except Exception as error:  # fx raises many kinds; the user needs one message
            complaint = f"{type(error).__name__}: {error}"
            failed_in = tracer.failed_in
            if not failed_in or failed_in in leaves or len(leaves) >= MAX_UNTRACEABLE_MODULES:
                raise UserError(
                    f"cannot trace {type(model).__name__} with torch.fx ({complaint})"
                    f"{_where(error)}; elasticize needs a model whose forward has no "
                    "data-dependent Python control flow"
                ) from None
            kind = type(model.get_submodule(failed_in)).__name__
            leaves[failed_in] = (
                f"torch.fx cannot trace this {kind} ({complaint.splitlines()[0][:160]})"
                f"{_where(error)}: kept whole, its channels static"
            )
    gm = fx.GraphModule(model, graph)
    for node in gm.graph.nodes:
        if node.op == "call_module" and str(node.target) in leaves:
            node.meta["untraceable"] = leaves[str(node.target)]
    return gm


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


# Attributes of a tensor that say nothing about its values or its size.
METADATA_ATTRIBUTES = frozenset({"dtype", "device", "is_cuda", "requires_grad"})


def reads_of_called_modules(graph: fx.Graph) -> dict[fx.Node, bool]:
    """``get_attr`` nodes reading a tensor of a module the graph also calls, each mapped to
    whether every use only asks for its metadata (``weight.dtype``, ``weight.device``,
    as EdgeNeXt's positional encoding does).

    Such a tensor must stay the module's own: wrapping it apart would break the module.
    A read of its values (weight standardisation, say) sees every channel, so the
    module's channels must then stay static.
    """
    called = {str(n.target) for n in graph.nodes if n.op == "call_module"}

    def inside_a_called_module(target: str) -> bool:  # "leaf.sub.weight" of a called "leaf"
        parts = target.split(".")[:-1]
        return any(".".join(parts[:i]) in called for i in range(1, len(parts) + 1))

    reads = {}
    for node in graph.nodes:
        if node.op == "get_attr" and inside_a_called_module(str(node.target)):
            reads[node] = all(
                user.op == "call_function"
                and user.target is getattr
                and len(user.args) == 2
                and user.args[1] in METADATA_ATTRIBUTES
                for user in node.users
            )
    return reads


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
