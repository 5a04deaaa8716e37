"""How each kind of layer and operation couples or propagates channels.

Every tensor's channel dimension belongs to a *channel group*: a convolution or linear
layer starts a new group at its output; per-channel operations (batch and layer norm,
depthwise convolutions, activations, pooling, stochastic depth) keep their input's
group; an element-wise operation of two tensors (a residual add, a squeeze-and-excite
product, a layer-scale product) couples the groups of its operands into one. This is
the dependency graph of Torch-Pruning (Fang et al., "DepGraph", CVPR 2023), read off
an fx graph: all layers touching one group must shrink together, so each group gets
one width.

A group stays at full width, with the reason recorded, when it touches the model's
input or output, a grouped (non-depthwise) convolution, an operation these rules do
not know, or a module called more than once. Such parts are kept static; the rest of
the model still becomes elastic. A layer type of your own follows the
:class:`~onefit.convert.ChannelRule` registered for it (:mod:`onefit.convert.custom_rules`).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from onefit.convert.custom_rules import ChannelRule, find_channel_rule
from onefit.convert.tracing import describe, node_shape, reads_of_called_modules
from onefit.errors import UserError

# -- what the operations do to channels ---------------------------------------------------

ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.Mish,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)
POOLING_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
UNARY_FUNCTIONS: set[Callable[..., Any]] = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.hardswish,
    F.hardsigmoid,
    F.silu,
    F.gelu,
    F.dropout,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.avg_pool2d,
    F.max_pool2d,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
}
UNARY_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
BINARY_FUNCTIONS: set[Callable[..., Any]] = {
    operator.add,
    operator.mul,
    operator.sub,
    operator.truediv,
    torch.add,
    torch.mul,
    torch.sub,
}
BINARY_METHODS = {"add", "mul", "sub", "div"}
# Reductions over some dimensions (squeeze-excite's x.mean((2, 3), keepdim=True)):
# channels pass through when the channel dimension is not reduced.
REDUCTION_METHODS = {"mean", "sum", "amax", "amin"}
REDUCTION_FUNCTIONS: set[Callable[..., Any]] = {torch.mean, torch.sum, torch.amax, torch.amin}
# Calls that read a tensor's shape, not its values.
SHAPE_QUERIES: set[Any] = {getattr, "size", "dim"}


def is_elementwise_module(module: nn.Module) -> bool:
    return isinstance(module, ELEMENTWISE_MODULES) or type(module).__name__ == "StochasticDepth"


# -- the result ---------------------------------------------------------------------------


@dataclass
class Layer:
    """One fx node that touches channels, with the groups of its input and output."""

    node: str
    name: str  # module name (or node name for functions)
    # conv | depthwise | grouped | linear | batchnorm | layernorm | param | custom | other
    kind: str
    in_group: int | None = None
    out_group: int | None = None
    channel_dim: int = 1  # for layer norms: 1 (NCHW) or -1 (last dim)
    param_dim: int = 0  # for parameters used element-wise: their channel dimension
    rule: ChannelRule | None = None  # for custom layers: the registered rule
    source: str | None = None  # for custom layers: the node of their input


class ChannelGroups(NamedTuple):
    """What :func:`find_groups` found; group ids are final (union-find roots)."""

    sizes: dict[int, int]  # group -> channels
    static_reasons: dict[int, list[str]]  # per static group: why
    layers: list[Layer]
    unsupported: dict[str, str]  # node -> description of the op kept static


def find_groups(gm: fx.GraphModule) -> ChannelGroups:
    """The channel groups and channel-touching layers of a shape-propagated graph."""
    finder = _GroupFinder(gm)
    finder.run()
    sizes, reasons, layers = finder.finish()
    return ChannelGroups(sizes, reasons, layers, finder.unsupported)


# -- union-find over channel groups --------------------------------------------------------


class _Groups:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.reasons: dict[int, list[str]] = {}

    def new(self, size: int, reason: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        group = len(self.parent) - 1
        if reason:
            self.freeze(group, reason)
        return group

    def find(self, group: int) -> int:
        while self.parent[group] != group:
            self.parent[group] = self.parent[self.parent[group]]
            group = self.parent[group]
        return group

    def freeze(self, group: int, reason: str) -> None:
        reasons = self.reasons.setdefault(self.find(group), [])
        if reason not in reasons:
            reasons.append(reason)

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        self.parent[b] = a
        for reason in self.reasons.pop(b, []):
            self.freeze(a, reason)
        if self.size[a] != self.size[b]:
            self.freeze(a, "channel counts disagree")
        return a


@dataclass
class _Tensor:
    group: int | None  # None: channels of unknown meaning (after an unsupported op)
    dim: int | None
    shape: tuple[int, ...]


@dataclass
class _Param:
    target: str
    shape: tuple[int, ...]


# -- the rules, one method per kind of node -----------------------------------------------


class _GroupFinder:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.groups = _Groups()
        self.info: dict[fx.Node, _Tensor | _Param] = {}
        self.layers: list[Layer] = []
        self.unsupported: dict[str, str] = {}
        self.param_users: dict[str, int] = {}  # get_attr node -> element-wise uses seen
        self.module_calls: dict[str, int] = {}
        self.tensor_owners: set[str] = set()  # modules whose own tensors the graph reads

    # helpers
    def tensor(self, node: Any) -> _Tensor | None:
        info = self.info.get(node) if isinstance(node, fx.Node) else None
        return info if isinstance(info, _Tensor) else None

    def group_at(self, info: _Tensor, dim: int, size: int, why: str) -> int:
        """The group of ``info``'s channels at ``dim``; a new static one if it has none there."""
        if info.group is not None and info.dim == dim:
            return info.group
        if info.group is not None:
            self.groups.freeze(info.group, why)
        return self.groups.new(size, why)

    def keep_static(self, node: fx.Node, why: str) -> None:
        """An op this analysis cannot follow: freeze every channel it touches."""
        self.unsupported[node.name] = why + self.custom_hint(node)
        for arg in node.all_input_nodes:
            info = self.info.get(arg)
            if isinstance(info, _Tensor) and info.group is not None:
                self.groups.freeze(info.group, f"next to an unsupported op ({why})")
            if isinstance(info, _Param):
                self.param_users[arg.name] = -(10**9)  # never sliced
        shape = node_shape(node)
        if shape is not None and len(shape) >= 2:
            # Its channels (assumed at dim 1 of a map, else the last) have a fixed width.
            dim = 1 if len(shape) == 4 else len(shape) - 1
            group = self.groups.new(shape[dim], f"output of an unsupported op ({why})")
            self.info[node] = _Tensor(group, dim, shape)
        elif shape is not None:
            self.info[node] = _Tensor(None, None, shape)

    def custom_hint(self, node: fx.Node) -> str:
        """How to fix it, when ``node`` runs inside a layer of the user's own with tensors of
        its own (a custom layer traced into): register a channel rule for that layer."""
        stack = node.meta.get("nn_module_stack") or {}
        for entry in reversed(list(stack.values())):
            path, cls = entry if isinstance(entry, tuple) else (str(entry), None)
            origin = str(getattr(cls, "__module__", "torch"))
            if path in self.tensor_owners and origin.split(".")[0] != "torch":
                name = getattr(cls, "__name__", str(cls))
                return (
                    f" in {path}, a {name}: onefit.convert.register_channel_rule({name}, ...) "
                    "makes such a layer elastic"
                )
        return ""

    def pass_through(self, node: fx.Node, source: Any, dim: int | None = None) -> None:
        info = self.tensor(source)
        shape = node_shape(node)
        if info is None or shape is None:
            self.keep_static(node, describe(node, self.gm))
            return
        self.info[node] = _Tensor(info.group, info.dim if dim is None else dim, shape)

    # per op
    def run(self) -> None:
        # Modules whose weights the graph also reads as values: their channels stay whole.
        module_reads = reads_of_called_modules(self.gm.graph)
        self.read_as_values = {
            str(node.target).rpartition(".")[0]
            for node, metadata_only in module_reads.items()
            if not metadata_only
        }
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                shape = node_shape(node) or ()
                dim = 1 if len(shape) >= 2 else None
                size = shape[1] if dim else 0
                self.info[node] = _Tensor(self.groups.new(size, "model input"), dim, shape)
            elif node.op == "get_attr":
                self.tensor_owners.add(str(node.target).rpartition(".")[0])
                value = _attr(self.gm, str(node.target))
                if node in module_reads and isinstance(value, torch.Tensor):
                    # Its module's own tensor: channels of unknown meaning here, never sliced.
                    self.info[node] = _Tensor(None, None, tuple(value.shape))
                elif isinstance(value, torch.Tensor):
                    self.info[node] = _Param(str(node.target), tuple(value.shape))
                    self.param_users[node.name] = 0
            elif node.op == "call_module":
                self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.call_function(node)
            elif node.op == "output":
                for arg in _nodes(node.args):
                    info = self.tensor(arg)
                    if info is not None and info.group is not None:
                        self.groups.freeze(info.group, "model output")

    def call_module(self, node: fx.Node) -> None:
        name = str(node.target)
        module = self.gm.get_submodule(name)
        self.module_calls[name] = self.module_calls.get(name, 0) + 1
        source = node.args[0] if node.args else None
        info = self.tensor(source)
        shape = node_shape(node)
        rule = find_channel_rule(module)
        untraceable = node.meta.get("untraceable")
        if untraceable:
            self.keep_static(node, untraceable)
        elif name in self.read_as_values:
            self.keep_static(node, f"its tensors are also read directly ({type(module).__name__})")
        elif rule is not None:
            self.custom(node, name, module, rule, info, shape)
        elif isinstance(module, nn.Conv2d) and info is not None and shape is not None:
            self.conv(node, name, module, info, shape)
        elif isinstance(module, nn.Linear) and info is not None and shape is not None:
            last = len(info.shape) - 1
            in_group = self.group_at(info, last, module.in_features, "input of a linear layer")
            out = self.groups.new(module.out_features)
            self.layers.append(Layer(node.name, name, "linear", in_group, out))
            self.info[node] = _Tensor(out, len(shape) - 1, shape)
        elif isinstance(module, nn.BatchNorm2d) and info is not None and info.dim == 1:
            self.layers.append(Layer(node.name, name, "batchnorm", info.group, info.group))
            self.pass_through(node, source)
        elif isinstance(module, nn.LayerNorm) and info is not None:
            self.layer_norm(node, name, module, info)
        elif is_elementwise_module(module) or (
            isinstance(module, POOLING_MODULES) and info is not None and info.dim == 1
        ):
            self.pass_through(node, source)
        elif isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            self.flatten(node, source)
        else:
            self.keep_static(node, f"unsupported layer {type(module).__name__}")

    def custom(
        self,
        node: fx.Node,
        name: str,
        module: nn.Module,
        rule: ChannelRule,
        info: _Tensor | None,
        shape: tuple[int, ...] | None,
    ) -> None:
        """A layer with a registered :class:`~onefit.convert.ChannelRule`."""
        kind = type(module).__name__
        if info is None or shape is None or len(node.all_input_nodes) != 1:
            self.keep_static(node, f"{kind} with a channel rule, not called on one tensor")
            return
        dim = rule.channel_dim % len(info.shape)
        if info.dim != dim or len(shape) != len(info.shape):
            self.keep_static(node, f"{kind}'s channels are not at dim {rule.channel_dim}")
            return
        in_channels, out_channels = rule.channels(module)
        if (info.shape[dim], shape[dim]) != (in_channels, out_channels):
            raise UserError(
                f"the channel rule {type(rule).__name__} says {name} ({kind}) maps "
                f"{in_channels} to {out_channels} channels, but in the traced model it maps "
                f"{info.shape[dim]} to {shape[dim]} (along dim {rule.channel_dim})"
            )
        source = node.all_input_nodes[0].name
        in_group = self.group_at(info, dim, in_channels, f"input of {kind}")
        if rule.coupled:
            layer = Layer(node.name, name, "custom", in_group, in_group, rule=rule, source=source)
            self.layers.append(layer)
            self.info[node] = _Tensor(in_group, dim, shape)
            return
        out = self.groups.new(out_channels)
        self.layers.append(
            Layer(node.name, name, "custom", in_group, out, rule=rule, source=source)
        )
        self.info[node] = _Tensor(out, dim, shape)

    def conv(
        self, node: fx.Node, name: str, conv: nn.Conv2d, info: _Tensor, shape: tuple[int, ...]
    ) -> None:
        square = (
            len(set(conv.kernel_size)) == 1
            and len(set(conv.stride)) == 1
            and len(set(conv.dilation)) == 1
            and not isinstance(conv.padding, str)
            and len(set(conv.padding)) == 1
            and conv.padding_mode == "zeros"
        )
        if not square or info.dim != 1:
            self.keep_static(node, "non-square or non-zero-padded convolution")
            return
        if conv.groups == 1:
            in_group = self.group_at(info, 1, conv.in_channels, "input of a convolution")
            out = self.groups.new(conv.out_channels)
            self.layers.append(Layer(node.name, name, "conv", in_group, out))
        elif conv.groups == conv.in_channels == conv.out_channels and info.group is not None:
            out = info.group
            self.layers.append(Layer(node.name, name, "depthwise", out, out))
        elif conv.in_channels == conv.out_channels and info.group is not None:
            # Grouped (ResNeXt, RegNet): whole groups drop, channels per group stay.
            out = info.group
            self.layers.append(Layer(node.name, name, "grouped", out, out))
        else:
            why = f"grouped convolution (groups={conv.groups})"
            in_group = self.group_at(info, 1, conv.in_channels, why)
            self.groups.freeze(in_group, why)
            out = self.groups.new(conv.out_channels, why)
            self.layers.append(Layer(node.name, name, "other", in_group, out))
        self.info[node] = _Tensor(out, 1, shape)

    def layer_norm(self, node: fx.Node, name: str, ln: nn.LayerNorm, info: _Tensor) -> None:
        dim = _layer_norm_dim(ln, info.shape)
        last = len(info.shape) - 1
        if dim is None or info.group is None or info.dim != (last if dim == -1 else dim):
            self.keep_static(node, f"layer norm over {ln.normalized_shape}")
            return
        self.layers.append(Layer(node.name, name, "layernorm", info.group, info.group, dim))
        self.pass_through(node, node.args[0])

    def flatten(self, node: fx.Node, source: Any) -> None:
        info = self.tensor(source)
        if info is None or info.dim != 1 or any(s != 1 for s in info.shape[2:]):
            self.keep_static(node, "flatten of a map larger than 1x1")
            return
        self.pass_through(node, source, dim=1)

    def call_function(self, node: fx.Node) -> None:
        target = node.target
        method = node.op == "call_method"
        # Positional and keyword operands alike (torch.add(a, other=b)).
        tensors = [a for a in node.all_input_nodes if a in self.info]
        if node_shape(node) is None:
            # Shape queries carry no channels (an op that turns sizes back into a tensor,
            # a reshape, is unsupported itself); anything else returning several tensors
            # (chunk, split, unbind) splits channels this analysis does not follow.
            if target not in SHAPE_QUERIES and any(self.tensor(a) for a in tensors):
                self.keep_static(node, describe(node, self.gm))
            return
        if (target in BINARY_METHODS if method else target in BINARY_FUNCTIONS) and len(
            tensors
        ) <= 2:
            self.binary(node, tensors)
        elif (target in UNARY_METHODS if method else target in UNARY_FUNCTIONS) and (
            len(tensors) == 1 and node.args and node.args[0] is tensors[0]
        ):
            self.pass_through(node, tensors[0])
        elif (target in REDUCTION_METHODS if method else target in REDUCTION_FUNCTIONS) and len(
            tensors
        ) == 1:
            self.reduction(node)
        elif target in (torch.flatten, "flatten") and _flatten_args(node) == (1, -1):
            self.flatten(node, node.args[0])
        elif target in (torch.permute, "permute") and len(tensors) == 1:
            self.permute(node)
        else:
            self.keep_static(node, describe(node, self.gm))

    def binary(self, node: fx.Node, operands: list[fx.Node]) -> None:
        shape = node_shape(node) or ()
        full = [self.tensor(a) for a in operands]
        lead = next((t for t in full if t is not None and t.shape == shape), None)
        if lead is None or lead.dim is None:
            self.keep_static(node, describe(node, self.gm))
            return
        dim = lead.dim
        group = lead.group
        for arg in operands:
            info = self.info[arg]
            offset = len(shape) - len(info.shape)
            own = dim - offset
            if own < 0 or info.shape[own] == 1:
                continue  # broadcast along the channels: no coupling
            if isinstance(info, _Param):
                self.param_users[arg.name] += 1
                layer = Layer(arg.name, info.target, "param", group, group, param_dim=own)
                self.layers.append(layer)
            elif info.group is None or info.dim != own + offset:
                # Channels meet other channels (or positions): neither side may shrink.
                why = f"mixed with unknown channels in {node.name}"
                for mixed in (group, info.group):
                    if mixed is not None:
                        self.groups.freeze(mixed, why)
            elif group is not None:
                group = self.groups.union(group, info.group)
        self.info[node] = _Tensor(group, dim, shape)

    def reduction(self, node: fx.Node) -> None:
        """A mean/sum/max over dimensions other than the channels keeps the channels."""
        info = self.tensor(node.args[0]) if node.args else None
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        dims = [dims] if isinstance(dims, int) else dims
        shape = node_shape(node)
        if (
            info is None
            or info.dim is None
            or shape is None
            or not isinstance(dims, (list, tuple))
            or not dims  # dim=[] reduces every dimension
            or not all(isinstance(d, int) for d in dims)
            or not isinstance(keepdim, bool)
        ):
            self.keep_static(node, describe(node, self.gm))
            return
        reduced = {d % len(info.shape) for d in dims}
        if info.dim in reduced:
            self.keep_static(node, f"{describe(node, self.gm)} over the channels")
            return
        dim = info.dim if keepdim else info.dim - sum(d < info.dim for d in reduced)
        self.info[node] = _Tensor(info.group, dim, shape)

    def permute(self, node: fx.Node) -> None:
        info = self.tensor(node.args[0])
        dims = node.args[1] if len(node.args) == 2 else node.args[1:]
        shape = node_shape(node)
        if info is None or info.dim is None or not isinstance(dims, (list, tuple)):
            self.keep_static(node, "permute")
            return
        order = [int(str(d)) % len(info.shape) for d in dims]
        self.info[node] = _Tensor(info.group, order.index(info.dim), shape or ())

    # results
    def finish(self) -> tuple[dict[int, int], dict[int, list[str]], list[Layer]]:
        find = self.groups.find
        for layer in self.layers:
            if layer.kind != "param" and self.module_calls.get(layer.name, 1) > 1:
                for group in (layer.in_group, layer.out_group):
                    if group is not None:
                        self.groups.freeze(group, f"{layer.name} is called more than once")
        nodes = {n.name: n for n in self.gm.graph.nodes}
        for layer in self.layers:
            uses = self.param_users.get(layer.node, 0)
            private = uses == 1 and len(nodes[layer.node].users) == 1
            if layer.kind == "param" and not private and layer.in_group is not None:
                self.groups.freeze(layer.in_group, f"{layer.name} is also used elsewhere")
        for layer in self.layers:
            layer.in_group = None if layer.in_group is None else find(layer.in_group)
            layer.out_group = None if layer.out_group is None else find(layer.out_group)
        roots = {find(g) for g in range(len(self.groups.parent))}
        sizes = {g: self.groups.size[g] for g in roots}
        reasons = {find(g): r for g, r in self.groups.reasons.items()}
        return sizes, reasons, self.layers


def _attr(root: nn.Module, target: str) -> Any:
    module_name, _, attr = target.rpartition(".")
    return getattr(root.get_submodule(module_name), attr)


def _nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, found.append)
    return found


def _flatten_args(node: fx.Node) -> tuple[int, int]:
    args = [*node.args[1:], None, None]
    start = node.kwargs.get("start_dim", args[0] if args[0] is not None else 0)
    end = node.kwargs.get("end_dim", args[1] if args[1] is not None else -1)
    return int(str(start)), int(str(end))


@torch.no_grad()
def _layer_norm_dim(ln: nn.LayerNorm, shape: tuple[int, ...]) -> int | None:
    """Which dimension ``ln`` normalises for inputs of ``shape``: -1, 1, or None (neither)."""
    if len(ln.normalized_shape) != 1 or not ln.elementwise_affine:
        return None
    width = ln.normalized_shape[0]
    if type(ln) is nn.LayerNorm:
        return -1 if shape[-1] == width else None
    # A subclass (ConvNeXt's LayerNorm2d permutes): find out by running a CPU copy once
    # (the model may live on another device, or on "meta" when only its shape matters).
    with torch.device("cpu"):
        probe = copy.deepcopy(ln).to_empty(device="cpu").float()
        probe.reset_parameters()
        x = torch.randn(1, *shape[1:], generator=torch.Generator().manual_seed(0))
        out = probe(x)
    for dim in (-1, 1):
        if x.shape[dim] != width:
            continue
        moved = x.movedim(dim, -1)
        with torch.device("cpu"):
            expected = F.layer_norm(moved, (width,), None, None, probe.eps).movedim(-1, dim)
        if out.shape == expected.shape and torch.allclose(out, expected, atol=1e-5):
            return dim
    return None
