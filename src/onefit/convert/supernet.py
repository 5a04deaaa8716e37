"""A supernet made from an existing model's traced graph (BootstrapNAS / InstaTune).

The converted model runs its own traced graph with its layers replaced by elastic
ones: convolutions, linear layers and norms read a prefix of their channels, tensors
used directly (layer scales) are sliced, and skipped residual blocks are cut out of
the graph. At the largest config nothing is sliced or skipped, so the supernet
computes what the original model computes. Extraction runs the same graph with plain
``torch.nn`` layers holding copies of the active weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from onefit.convert.analysis import Analysis, Layer, analyse
from onefit.convert.modules import ActiveConv2d, ActiveLinear, RuledLayer, SlicedParameter
from onefit.convert.options import ConversionOptions
from onefit.convert.report import ConversionReport, build_report
from onefit.convert.timm_rules import register_for
from onefit.convert.tracing import NodeProfiler, reads_of_called_modules, trace
from onefit.elastic import ElasticBatchNorm2d, permute_
from onefit.elastic.channels import batch_norm_tensors
from onefit.elastic.norm import ElasticLayerNorm
from onefit.errors import UserError, UserTypeError
from onefit.metrics.counting import Cost
from onefit.space import ArchConfig, SearchSpace
from onefit.supernets.base import Supernet
from onefit.supernets.inputs import ImageInput

# The variants (one graph per set of skipped blocks) kept compiled at a time.
_MAX_VARIANTS = 64


def width_choices(channels: int, ratios: Sequence[float], round_to: int) -> list[int]:
    """Widths ``ratio * channels`` rounded to multiples of ``round_to``, plus ``channels``.

    Example:
        >>> width_choices(64, (0.25, 0.5, 0.75, 1.0), 8), width_choices(24, (0.25, 0.5), 8)
        ([16, 32, 48, 64], [8, 16, 24])
    """
    widths = {channels}
    for ratio in ratios:
        width = max(round_to, int(channels * ratio / round_to + 0.5) * round_to)
        if width < channels:
            widths.add(width)
    return sorted(widths)


class ConvertedSupernet(Supernet):
    """A supernet over an existing ``nn.Module``; build it with :func:`onefit.elasticize`.

    Dimensions: ``w.<layer>`` the width of each coupled channel group (named after its
    first producing layer; with ``width_mode="global"`` one ratio ``w`` for all),
    ``d.<block>`` the number of residual blocks kept in each chain of consecutive blocks
    (named after its first block), ``k.<layer>`` the kernel size of depthwise
    convolutions, and ``r`` the input resolution. ``options`` (default
    ``ConversionOptions()``) says which of these exist and their choices.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        options: ConversionOptions | None = None,
    ) -> None:
        super().__init__()
        _check_input(model, example_input)
        register_for(model)  # timm's fused norm + activation layers, when it holds them
        if options is not None and not isinstance(options, ConversionOptions):
            raise UserTypeError(
                "options must be a ConversionOptions (onefit.elasticize also takes a dict), "
                f"got {type(options).__name__}"
            )
        self.options = options or ConversionOptions()
        self.width_mode = self.options.width_mode
        side = int(example_input.shape[-1])
        self.resolutions_ = self.options.resolutions or (side,)
        self.in_channels = int(example_input.shape[1])
        self.model_name = type(model).__name__
        # Traced in eval mode: fx fixes branches on self.training at trace time, and the
        # layers that differ in training (batch norm, dropout) stay calls that follow
        # the supernet's mode at run time.
        gm = trace(copy.deepcopy(model).eval())
        _no_inplace(gm)
        param = next(gm.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        self.shapes: dict[int, dict[str, tuple[int, ...]]] = {}
        self.node_macs: dict[int, dict[str, int]] = {}
        with torch.no_grad():
            for r in [*sorted(set(self.resolutions_) - {side}), side]:  # example's last: meta
                profiler = NodeProfiler(gm)
                x = torch.zeros(1, self.in_channels, r, r, device=device)
                out = profiler.run(x.to(example_input.dtype))
                self.shapes[r], self.node_macs[r] = profiler.shapes, profiler.macs
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(
                f"elasticize needs a model returning one (batch, classes) tensor, got {got}"
            )
        self.num_classes = int(out.shape[1])
        self.analysis: Analysis = analyse(gm)
        self.layers = {layer.node: layer for layer in self.analysis.layers}
        self.param_layers = {p.name: p for p in self.analysis.layers if p.kind == "param"}
        self.module_params = {
            str(n.target): sum(p.numel() for p in gm.get_submodule(str(n.target)).parameters())
            for n in gm.graph.nodes
            if n.op == "call_module"
        }
        self.body = gm
        self._make_elastic()
        self._build_space(
            self.options.cnn_width_ratios(),
            self.options.round_to,
            self.options.depth,
            self.options.kernel,
        )
        self.report: ConversionReport = build_report(self)
        self._variants: dict[frozenset[str], fx.GraphModule] = {}
        self._skipped: frozenset[str] = frozenset()
        if self.options.sort and device.type != "meta":
            self.sort_channels()
        self.train()  # like every family: a fresh supernet is in training mode, throughout
        self.input_spec = ImageInput(self.in_channels, self.resolutions)
        self.set_active(self.space.largest())

    @property
    def spec(self) -> dict[str, Any] | None:
        """How :func:`onefit.create_supernet` rebuilds this net (None when it was made by
        :func:`onefit.elasticize` from a model), with its options as JSON under ``"options"``.
        """
        spec: dict[str, Any] | None = self.__dict__.get("_spec")
        return spec

    @spec.setter
    def spec(self, value: Mapping[str, Any] | None) -> None:
        # Specs go into checkpoints, model cards and result stores as JSON: an options
        # object given to a family becomes its dict, and the options in effect are added.
        if value is not None:
            kwargs = dict(value.get("kwargs", {}))
            if isinstance(kwargs.get("options"), ConversionOptions):
                kwargs["options"] = kwargs["options"].to_dict()
            value = {**value, "kwargs": kwargs, "options": self.options.to_dict()}
        self.__dict__["_spec"] = value

    # -- building -----------------------------------------------------------------------------
    def _make_elastic(self) -> None:
        """Swap the analysed layers for elastic ones; tensors used directly become modules."""
        gm = self.body
        for layer in self.analysis.layers:
            if layer.kind == "param":
                continue
            module = gm.get_submodule(layer.name)
            if layer.kind == "custom" and layer.rule is not None:
                elastic: nn.Module = RuledLayer(module, layer.rule)
            elif isinstance(module, nn.Conv2d) and layer.kind in ("conv", "depthwise", "grouped"):
                sizes = _kernel_choices(module) if layer.kind == "depthwise" else None
                elastic = ActiveConv2d.from_conv(module, sizes)
            elif isinstance(module, nn.Linear):
                elastic = ActiveLinear.from_linear(module)
            elif isinstance(module, nn.BatchNorm2d):
                elastic = ElasticBatchNorm2d.from_batch_norm(module)
            elif isinstance(module, nn.LayerNorm):
                elastic = ElasticLayerNorm.from_layer_norm(module, layer.channel_dim)
            else:
                continue
            reference = next(iter(module.parameters()), None)
            if reference is not None:
                elastic = elastic.to(device=reference.device, dtype=reference.dtype)
            _set_submodule(gm, layer.name, elastic)
        dims = {
            layer.node: layer.param_dim for layer in self.analysis.layers if layer.kind == "param"
        }
        module_reads = reads_of_called_modules(gm.graph)
        for node in list(gm.graph.nodes):
            if node.op != "get_attr" or node in module_reads:  # those stay the module's
                continue
            target = str(node.target)
            owner_name, _, attr = target.rpartition(".")
            owner = gm.get_submodule(owner_name)
            tensor = getattr(owner, attr)
            if not isinstance(tensor, torch.Tensor):
                continue
            delattr(owner, attr)
            owner.add_module(attr, SlicedParameter(tensor, dims.get(node.name, 0)))
            node.op = "call_module"
        gm.recompile()

    def _build_space(
        self, ratios: Sequence[float], round_to: int, depth: bool, kernel: bool
    ) -> None:
        analysis = self.analysis
        dims: dict[str, list[Any]] = {}
        self.width_dims: dict[int, str] = {}
        self.group_widths: dict[int, list[int]] = {}
        for group, size in analysis.group_sizes.items():  # in the order of their producers
            if analysis.is_static(group) or group not in analysis.group_names:
                continue
            # Grouped convolutions keep their channels per group: widths are whole groups.
            choices = width_choices(size, ratios, math.lcm(round_to, self.group_width(group)))
            if len(choices) < 2:
                analysis.static_reasons[group] = [f"too narrow to shrink ({size} channels)"]
                continue
            name = "w" if self.width_mode == "global" else f"w.{analysis.group_names[group]}"
            self.width_dims[group] = name
            self.group_widths[group] = choices
            dims[name] = sorted({*ratios, 1.0}) if self.width_mode == "global" else choices
        self.depth_dims: dict[str, list[str]] = {}  # dimension -> the chain's additions
        if depth:
            for chain in analysis.chains:
                blocks = [analysis.blocks[i] for i in chain]
                name = f"d.{blocks[0].owner}"
                if name in dims:  # two chains in one module: tell them apart
                    name = f"d.{blocks[0].owner}.{blocks[0].add}"
                self.depth_dims[name] = [b.add for b in blocks]
                dims[name] = list(range(len(blocks) + 1))
        self.kernel_dims: dict[str, str] = {}  # dimension -> module name
        for layer in analysis.layers:
            module = self.body.get_submodule(layer.name) if layer.kind != "param" else None
            if isinstance(module, ActiveConv2d) and len(module.kernel_sizes) > 1:
                if kernel:
                    self.kernel_dims[f"k.{layer.name}"] = layer.name
                    dims[f"k.{layer.name}"] = list(module.kernel_sizes)
                else:
                    module.kernel_sizes = module.kernel_sizes[-1:]
        dims["r"] = sorted(self.resolutions_)
        self.space = SearchSpace(dims)

    # -- activating ---------------------------------------------------------------------------
    def width(self, group: int | None, config: Mapping[str, Any]) -> int | None:
        """The active width of ``group`` under ``config`` (None: the group is not elastic).

        With ``width_mode="global"`` the one dimension ``w`` is a ratio, and each group
        takes its width choice nearest that ratio of its channels.
        """
        name = self.width_dims.get(group) if group is not None else None
        if name is None or group is None:
            return None
        if self.width_mode == "global":
            choices = self.group_widths[group]
            ratio, full = float(config[name]), max(choices)
            return min(choices, key=lambda width: (abs(width / full - ratio), width))
        return int(config[name])

    def _activate(self, config: ArchConfig) -> None:
        gm = self.body
        for layer in self.layers.values():
            module = gm.get_submodule(layer.name)
            if isinstance(module, (ActiveConv2d, ActiveLinear, RuledLayer)):
                module.active_out = self.width(layer.out_group, config)
            elif isinstance(module, SlicedParameter):
                module.active = self.width(layer.in_group, config)
        for dim, name in self.kernel_dims.items():
            conv = gm.get_submodule(name)
            if isinstance(conv, ActiveConv2d):
                conv.active_kernel = int(config[dim])
        self._skipped = self.skipped_blocks(config)

    def skipped_blocks(self, config: Mapping[str, Any]) -> frozenset[str]:
        """The additions whose residual branch ``config`` drops (the chains' tails)."""
        skipped: set[str] = set()
        for dim, adds in self.depth_dims.items():
            skipped.update(adds[int(config[dim]) :])
        return frozenset(skipped)

    def _graph(self, skipped: frozenset[str]) -> fx.Graph:
        """A copy of the graph with the branches of ``skipped`` cut out."""
        graph = copy.deepcopy(self.body.graph)
        nodes = {node.name: node for node in graph.nodes}
        for node in list(graph.nodes):
            if node.name in skipped:
                # The skipped input may itself be a skipped addition, already replaced.
                skip = nodes[self._skip_of[node.name]]
                node.replace_all_uses_with(skip)
                nodes[node.name] = skip
                graph.erase_node(node)
        # Dead-code removal by hand: the branches are pure layers, and fx's own pass needs
        # an owning module to decide purity.
        for node in reversed(list(graph.nodes)):
            if node.op not in ("placeholder", "output") and not node.users:
                graph.erase_node(node)
        return graph

    @property
    def _skip_of(self) -> dict[str, str]:
        return {block.add: block.skip for block in self.analysis.blocks}

    def _variant(self) -> fx.GraphModule:
        if not self._skipped:
            return self.body
        variants = self.__dict__["_variants"]
        if self._skipped not in variants:
            if len(variants) >= _MAX_VARIANTS:
                variants.pop(next(iter(variants)))
            variants[self._skipped] = fx.GraphModule(self.body, self._graph(self._skipped))
        return variants[self._skipped]

    def _apply(self, fn: Any, recurse: bool = True) -> ConvertedSupernet:
        # Compiled variants hold references to the modules' tensors; rebuild after moves.
        self.__dict__.get("_variants", {}).clear()
        return super()._apply(fn, recurse)

    def __deepcopy__(self, memo: dict[int, Any]) -> ConvertedSupernet:
        variants = self.__dict__.pop("_variants")
        try:
            clone = copy.copy(self)
            clone.__dict__ = {k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()}
        finally:
            self.__dict__["_variants"] = variants
        clone.__dict__["_variants"] = {}
        return clone

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_variants"] = {}
        return state

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._variant()(x)
        return out

    # -- static models and cost -------------------------------------------------------------
    def _build_static(self, config: ArchConfig) -> nn.Module:
        graph = self._graph(self.skipped_blocks(config))
        gm = self.body
        parts: dict[str, Any] = {}
        for node in list(graph.nodes):
            if node.op != "call_module":
                continue
            target = str(node.target)
            module = gm.get_submodule(target)
            layer = self.layers.get(node.name)
            if isinstance(module, SlicedParameter):
                param_layer = self.param_layers.get(target)
                width = None if param_layer is None else self.width(param_layer.in_group, config)
                parts[target] = module.to_static(width)
                node.op = "get_attr"
            elif layer is None:
                parts[target] = copy.deepcopy(module)
            else:
                parts[target] = self._static_layer(module, layer, config)
        for node in graph.nodes:  # tensors of called modules: the static module's own
            if node.op == "get_attr" and str(node.target) not in parts:
                owner, _, attr = str(node.target).rpartition(".")
                built = parts.get(owner)  # None: its call is skipped in this config
                tensor = getattr(gm.get_submodule(owner) if built is None else built, attr)
                parts[str(node.target)] = tensor if built is not None else tensor.detach().clone()
        static = fx.GraphModule(parts, graph, class_name=type(self.body).__name__)
        return static

    def _static_layer(self, module: nn.Module, layer: Layer, config: ArchConfig) -> nn.Module:
        in_width = self.width(layer.in_group, config)
        out_width = self.width(layer.out_group, config)
        if isinstance(module, ActiveConv2d):
            full_in = module.in_channels
            kernel = next(
                (int(config[d]) for d, n in self.kernel_dims.items() if n == layer.name), None
            )
            return module.to_static(in_width or full_in, out_width or module.out_channels, kernel)
        if isinstance(module, ActiveLinear):
            return module.to_static(
                in_width or module.in_features, out_width or module.out_features
            )
        if isinstance(module, ElasticBatchNorm2d):
            return module.to_static(in_width or module.num_features)
        if isinstance(module, ElasticLayerNorm):
            return module.to_static(in_width or module.normalized_shape[0])
        if isinstance(module, RuledLayer):
            return module.to_static(in_width, out_width)
        return copy.deepcopy(module)

    def cost(self, config: Mapping[str, Any]) -> Cost:
        cfg = self.space.validate(config)
        r = int(cfg["r"])
        shapes, node_macs = self.shapes[r], self.node_macs[r]
        alive = self._alive_nodes(self.skipped_blocks(cfg))
        macs = 0
        params: dict[str, int] = {}
        gm = self.body
        for name, target in alive:
            layer = self.layers.get(name)
            if layer is None or layer.kind in ("param", "other"):
                # Fixed-size layers and functions: their MACs as measured when converting.
                if layer is None or layer.kind == "other":
                    macs += node_macs.get(name, 0)
                if target is not None:
                    params[target] = self._static_params(target, cfg)
                continue
            module = gm.get_submodule(layer.name)
            if isinstance(module, RuledLayer) and layer.source is not None:
                layer_cost = self._custom_cost(module, layer, cfg, shapes[layer.source])
            else:
                layer_cost = self._layer_cost(module, layer, cfg, shapes[name])
            macs += layer_cost.macs
            params[layer.name] = layer_cost.params
        return Cost(macs=macs, params=sum(params.values()))

    def _static_params(self, target: str, config: ArchConfig) -> int:
        module = self.body.get_submodule(target)
        if isinstance(module, SlicedParameter):
            if not isinstance(module.weight, nn.Parameter):
                return 0
            layer = self.param_layers.get(target)
            width = None if layer is None else self.width(layer.in_group, config)
            size = module.weight.shape[module.dim]
            return module.weight.numel() // size * (width or size)
        return self.module_params.get(target, 0)

    def _layer_cost(
        self, module: nn.Module, layer: Layer, config: ArchConfig, out_shape: tuple[int, ...]
    ) -> Cost:
        in_width = self.width(layer.in_group, config)
        out_width = self.width(layer.out_group, config)
        if isinstance(module, ActiveConv2d):
            kernel = next(
                (int(config[d]) for d, n in self.kernel_dims.items() if n == layer.name), None
            )
            k = kernel or module.max_kernel_size
            c_in = in_width or module.in_channels
            c_out = c_in if module.depthwise else (out_width or module.out_channels)
            per_out = k * k * (module.group_width if module.depthwise else c_in)
            bias = c_out if module.bias is not None else 0
            spatial = out_shape[2] * out_shape[3]
            return Cost(macs=c_out * per_out * spatial, params=c_out * per_out + bias)
        if isinstance(module, ActiveLinear):
            c_in = in_width or module.in_features
            c_out = out_width or module.out_features
            tokens = 1
            for size in out_shape[1:-1]:
                tokens *= size
            bias = c_out if module.bias is not None else 0
            return Cost(macs=c_in * c_out * tokens, params=c_in * c_out + bias)
        if isinstance(module, ElasticBatchNorm2d):
            return Cost(params=2 * (in_width or module.num_features) if module.affine else 0)
        if isinstance(module, ElasticLayerNorm):
            width = in_width or module.normalized_shape[0]
            return Cost(params=width * (1 if module.bias is None else 2))
        return Cost(params=self.module_params.get(layer.name, 0))

    def _custom_cost(
        self, module: RuledLayer, layer: Layer, config: ArchConfig, in_shape: tuple[int, ...]
    ) -> Cost:
        """What the layer's rule measures for its active widths (cached: few widths exist)."""
        full_in, full_out = module.rule.channels(module.layer)
        c_in = self.width(layer.in_group, config) or full_in
        c_out = self.width(layer.out_group, config) or full_out
        shape = list(in_shape[1:])  # one input, without the batch dimension
        shape[module.rule.channel_dim % len(in_shape) - 1] = c_in
        key = (layer.node, c_in, c_out, tuple(shape))
        cache: dict[tuple[Any, ...], Cost] = self.__dict__.setdefault("_custom_costs", {})
        if key not in cache:
            cache[key] = module.rule.cost(module.layer, c_in, c_out, tuple(shape))
        return cache[key]

    def _alive_nodes(self, skipped: frozenset[str]) -> list[tuple[str, str | None]]:
        """``(node name, module target or None)`` of the nodes ``skipped`` leaves running."""
        cache = self.__dict__.setdefault("_alive_cache", {})
        if skipped not in cache:
            graph = self._graph(skipped)
            cache[skipped] = [
                (n.name, str(n.target) if n.op == "call_module" else None) for n in graph.nodes
            ]
        result: list[tuple[str, str | None]] = cache[skipped]
        return result

    def units(self, config: Mapping[str, Any]) -> list[str]:
        """Not available: a converted model is a graph, not a chain of layers to time apart."""
        raise UserError(
            "latency lookup tables need a supernet whose sub-networks are chains of layers; "
            "a converted model is a general graph: measure latency instead (objective "
            "'latency_ms' with a runtime)"
        )

    # -- importance sorting -------------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self) -> None:
        """Order every elastic channel group by importance, most important first.

        A channel's importance sums, over every convolution and linear layer that writes
        or reads it, the L1 norm of its weights (each layer scaled by its mean, so that
        layers of different sizes weigh alike), as Torch-Pruning's grouped magnitude
        importance does. The full model computes the same function afterwards.
        """
        for group in self.width_dims:
            members = [
                layer
                for layer in self.layers.values()
                if group in (layer.in_group, layer.out_group)
            ]
            score = torch.zeros(self.analysis.group_sizes[group], dtype=torch.float64)
            for layer in members:
                weight = self._weight(layer)
                if weight is None or layer.kind not in ("conv", "linear", "depthwise", "grouped"):
                    continue
                dim = 0 if layer.out_group == group else 1
                norms = weight.detach().abs().transpose(0, dim).flatten(1).sum(1).double().cpu()
                score += norms / norms.mean().clamp_min(1e-12)
            order = _block_order(score, self.group_width(group))
            for layer in members:
                permute_(self._channel_tensors(layer, group), order)

    def group_width(self, group: int) -> int:
        """Channels per group of the grouped convolutions on ``group`` (1: none): widths
        of ``group`` are multiples of it, and sorting moves whole groups."""
        width = 1
        for layer in self.analysis.layers:
            if layer.kind == "grouped" and layer.in_group == group:
                conv = self.body.get_submodule(layer.name)
                if isinstance(conv, ActiveConv2d):
                    width = math.lcm(width, conv.group_width)
        return width

    def _weight(self, layer: Layer) -> torch.Tensor | None:
        if layer.kind == "param":
            return None
        weight = getattr(self.body.get_submodule(layer.name), "weight", None)
        return weight if isinstance(weight, torch.Tensor) else None

    def _channel_tensors(self, layer: Layer, group: int) -> list[tuple[torch.Tensor | None, int]]:
        if layer.kind == "param":
            sliced = self.body.get_submodule(layer.name)
            return [(getattr(sliced, "weight"), layer.param_dim)]  # noqa: B009
        module = self.body.get_submodule(layer.name)
        if isinstance(module, ElasticBatchNorm2d):
            return batch_norm_tensors(module)
        if isinstance(module, ElasticLayerNorm):
            return [(module.weight, 0), (module.bias, 0)]
        if isinstance(module, RuledLayer):
            return _rule_tensors(module, layer, group)
        if isinstance(module, (ActiveConv2d, ActiveLinear)):
            if layer.kind in ("depthwise", "grouped") or layer.out_group == group:
                tensors: list[tuple[torch.Tensor | None, int]] = [
                    (module.weight, 0),
                    (module.bias, 0),
                ]
                if layer.kind not in ("depthwise", "grouped") and layer.in_group == group:
                    tensors.append((module.weight, 1))
                return tensors
            return [(module.weight, 1)]
        return []


def _block_order(score: torch.Tensor, block: int) -> torch.Tensor:
    """Channels most important first, moving blocks of ``block`` channels as wholes (the
    groups of a grouped convolution), each block keeping its inner order.

    Example:
        >>> _block_order(torch.tensor([1.0, 2.0, 5.0, 0.0]), 2).tolist()
        [2, 3, 0, 1]
    """
    if block == 1:
        return torch.argsort(score, descending=True, stable=True)
    blocks = torch.argsort(score.view(-1, block).sum(1), descending=True, stable=True)
    return (blocks[:, None] * block + torch.arange(block)).flatten()


def _rule_tensors(
    module: RuledLayer, layer: Layer, group: int
) -> list[tuple[torch.Tensor | None, int]]:
    """The tensors of a custom layer that hold ``group``'s channels, with their dimension."""
    rule = module.rule
    named = dict(module.layer.named_parameters()) | dict(module.layer.named_buffers())
    tensors: list[tuple[torch.Tensor | None, int]] = []
    for name, (in_dim, out_dim) in rule.tensors(module.layer).items():
        tensor = named.get(name)
        if tensor is None:
            continue
        if rule.coupled:
            dim = in_dim if in_dim is not None else out_dim
            if dim is not None:
                tensors.append((tensor, dim))
            continue
        if out_dim is not None and layer.out_group == group:
            tensors.append((tensor, out_dim))
        if in_dim is not None and layer.in_group == group:
            tensors.append((tensor, in_dim))
    return tensors


def _no_inplace(gm: fx.GraphModule) -> None:
    """Turn off in-place activations: with a block skipped, a ReLU that ran in place on the
    block's output would overwrite the block's input, which autograd still needs."""
    for module in gm.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # type: ignore[assignment]
    for node in gm.graph.nodes:
        if node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
    gm.recompile()


def _kernel_choices(conv: nn.Conv2d) -> list[int] | None:
    """3, 5, ..., k for a depthwise conv with an odd k >= 5, "same" padding, no dilation."""
    k = conv.kernel_size[0]
    same = conv.padding == (k // 2, k // 2) and conv.dilation == (1, 1)
    if k >= 5 and k % 2 == 1 and same:
        return list(range(3, k + 1, 2))
    return None


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name), attr, module)


def _check_input(model: object, example_input: object) -> None:
    if not isinstance(model, nn.Module):
        raise UserTypeError(f"elasticize needs a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise UserTypeError(
            f"example_input must be a torch.Tensor batch, got {type(example_input).__name__}"
        )
    if example_input.dim() != 4 or example_input.shape[-1] != example_input.shape[-2]:
        raise UserError(
            "example_input must be a batch of square images (N, C, H, H), got shape "
            f"{tuple(example_input.shape)}"
        )
