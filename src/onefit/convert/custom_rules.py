"""Channel rules for layers of your own: teach :func:`onefit.elasticize` a new layer type.

The converter knows ``torch.nn``'s convolutions, linear layers, norms, activations and
pooling (:mod:`onefit.convert.rules`). A layer it does not know keeps its channels
fixed, and so does every layer whose channels are coupled to it; the report names it.
Registering a :class:`ChannelRule` for the layer's type, as Torch-Pruning's
``register_customized_layer`` does for pruning, makes it elastic: the layer is traced
as one call, its channels join the channel groups of the layers around it, and its
tensors are cut to each sub-network's widths, in the supernet and in the plain models
``extract`` gives.

A rule says one thing, in :meth:`ChannelRule.tensors`: which of the layer's parameters
and buffers hold its input and output channels, along which dimension. ``coupled``
says whether its outputs *are* its input channels (a per-channel scale, a norm) or new
ones (a convolution). Running, extracting and costing a narrowed layer have defaults
built on that, for a layer whose ``forward`` reads its sizes from its tensors' shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call

from onefit.errors import DuplicateNameError, UnknownNameError, UserError, UserTypeError
from onefit.metrics.counting import Cost, count

# Dimensions of one tensor: (where its input channels are, where its output channels
# are), None for a side it does not hold.
TensorDims = tuple[int | None, int | None]


class ChannelRule:
    """How one layer type couples its channels, and which of its tensors hold them.

    Implement :meth:`tensors`; set ``coupled = True`` for a layer whose output
    channels are its input channels. Override :meth:`extract` when the layer keeps
    sizes apart from its tensors (``self.channels = 64``) that a narrower copy must
    update, and :meth:`forward` when slicing its tensors is not enough to run it narrow.

    Example:
        >>> class Scale(nn.Module):  # a learned per-channel scale
        ...     def __init__(self, channels: int) -> None:
        ...         super().__init__()
        ...         self.weight = nn.Parameter(torch.ones(channels))
        ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...         return x * self.weight.view(1, -1, 1, 1)
        >>> class ScaleRule(ChannelRule):
        ...     coupled = True
        ...     def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
        ...         return {"weight": (0, 0)}
        >>> rule = ScaleRule()
        >>> rule.channels(Scale(16))
        (16, 16)
        >>> rule.extract(Scale(16), 8, 8).weight.shape
        torch.Size([8])
    """

    # True: the output channels are the input channels (shrink together, one group);
    # False: the output starts new channels (a convolution), with a width of its own.
    coupled: ClassVar[bool] = False
    # The channel dimension of the layer's input and output tensors (1: NCHW or NC).
    channel_dim: ClassVar[int] = 1

    def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
        """Each parameter or buffer of ``layer`` that holds channels (by its name in
        ``layer.named_parameters()``/``named_buffers()``): ``(input-channel dim,
        output-channel dim)``, ``None`` for a side it does not hold.

        A 1x1 convolution's weight ``(out, in, 1, 1)`` is ``(1, 0)`` and its bias
        ``(None, 0)``; for a coupled layer both sides are the same channels, so a
        per-channel scale ``(C,)`` is ``(0, 0)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement tensors(layer)")

    # -- what the converter calls; defaults built on tensors() ------------------------------
    def channels(self, layer: nn.Module) -> tuple[int, int]:
        """``(input channels, output channels)`` of ``layer`` at full width, read off its
        tensors; raises ``ValueError`` when they disagree or no tensor holds a side."""
        sizes: dict[str, dict[int, str]] = {"input": {}, "output": {}}
        for name, (tensor, in_dim, out_dim) in self._resolved(layer).items():
            for side, dim in (("input", in_dim), ("output", out_dim)):
                if dim is not None:
                    sizes[side].setdefault(int(tensor.shape[dim]), name)
        if self.coupled:
            merged = {**sizes["input"], **sizes["output"]}
            sizes = {"input": merged, "output": merged}
        found = []
        for side in ("input", "output"):
            if len(sizes[side]) != 1:
                raise UserError(
                    f"{type(self).__name__}.tensors({type(layer).__name__}) gives "
                    f"{_describe(sizes[side])} {side} channels; it must give one count "
                    "(a tensor with that side's dimension, the same size in each)"
                )
            found.append(next(iter(sizes[side])))
        return found[0], found[1]

    def sliced(
        self, layer: nn.Module, in_channels: int, out_channels: int
    ) -> dict[str, torch.Tensor]:
        """``layer``'s channel tensors cut to the first ``in_channels`` inputs and
        ``out_channels`` outputs (views: gradients reach the full tensors)."""
        out: dict[str, torch.Tensor] = {}
        for name, (tensor, in_dim, out_dim) in self._resolved(layer).items():
            if in_dim is not None:
                tensor = tensor.narrow(in_dim, 0, in_channels)
            if out_dim is not None and out_dim != in_dim:
                tensor = tensor.narrow(out_dim, 0, out_channels)
            out[name] = tensor
        return out

    def forward(self, layer: nn.Module, x: torch.Tensor, out_channels: int | None) -> torch.Tensor:
        """Run ``layer`` on ``x`` (a prefix of its input channels) with ``out_channels``
        outputs (None: all), by calling its own ``forward`` on sliced tensors."""
        full_in, full_out = self.channels(layer)
        in_channels = int(x.shape[self.channel_dim])
        if self.coupled:
            out_channels = in_channels
        out_channels = full_out if out_channels is None else out_channels
        if in_channels == full_in and out_channels == full_out:
            result: torch.Tensor = layer(x)
            return result
        result = functional_call(layer, self.sliced(layer, in_channels, out_channels), (x,))
        return result

    @torch.no_grad()
    def extract(self, layer: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
        """A copy of ``layer`` with ``in_channels`` inputs and ``out_channels`` outputs:
        its channel tensors cut to those prefixes (parameters stay parameters)."""
        static = copy.deepcopy(layer)
        for name, tensor in self.sliced(layer, in_channels, out_channels).items():
            owner_name, _, attr = name.rpartition(".")
            owner = static.get_submodule(owner_name)
            current = getattr(owner, attr)
            if isinstance(current, nn.Parameter):
                setattr(owner, attr, nn.Parameter(tensor.clone(), current.requires_grad))
            else:
                owner.register_buffer(
                    attr, tensor.clone(), attr not in owner._non_persistent_buffers_set
                )
        return static

    def cost(
        self, layer: nn.Module, in_channels: int, out_channels: int, input_shape: tuple[int, ...]
    ) -> Cost:
        """MACs and parameters of ``extract(layer, in_channels, out_channels)`` on one
        input of ``input_shape`` (no batch dimension), measured as :func:`onefit.count`
        measures a whole model, so that the two agree."""
        return count(self.extract(layer, in_channels, out_channels), input_shape)

    def _resolved(self, layer: nn.Module) -> dict[str, tuple[torch.Tensor, int | None, int | None]]:
        """:meth:`tensors` with each name looked up (``None`` tensors, e.g. no bias, left out)."""
        named = dict(layer.named_parameters()) | dict(layer.named_buffers())
        resolved = {}
        for name, (in_dim, out_dim) in self.tensors(layer).items():
            if name not in named:
                if _is_none(layer, name):
                    continue  # an optional tensor the layer does not have (bias=False)
                raise UserError(
                    f"{type(self).__name__}.tensors names {name!r}, which is not a parameter "
                    f"or buffer of {type(layer).__name__}; it has: {', '.join(named) or '(none)'}"
                )
            if self.coupled and in_dim is not None and out_dim is not None and in_dim != out_dim:
                raise UserError(
                    f"{type(self).__name__} is coupled, so {name!r} holds one set of channels: "
                    f"give one dimension, e.g. ({in_dim}, {in_dim}), got ({in_dim}, {out_dim})"
                )
            resolved[name] = (named[name], in_dim, out_dim)
        return resolved


def _is_none(layer: nn.Module, name: str) -> bool:
    """Whether ``name`` is an attribute of ``layer`` set to None (a missing bias)."""
    owner_name, _, attr = name.rpartition(".")
    try:
        return getattr(layer.get_submodule(owner_name), attr) is None
    except AttributeError:
        return False


def _describe(sizes: Mapping[int, str]) -> str:
    if not sizes:
        return "no"
    return " and ".join(f"{size} (from {name!r})" for size, name in sizes.items())


# -- the registry, keyed by layer type ------------------------------------------------------

_RULES: dict[type[nn.Module], ChannelRule] = {}

# Layers the converter makes elastic itself, with analytic costs: a rule for one of these
# exact types would replace that in every model, so it is refused (a subclass may have one).
BUILT_IN_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm)


def _type_name(layer_type: type) -> str:
    return f"{layer_type.__module__}.{layer_type.__qualname__}"


def register_channel_rule(layer_type: type[nn.Module], rule: ChannelRule) -> ChannelRule:
    """Teach :func:`onefit.elasticize` how ``layer_type`` (and its subclasses) couples
    and slices channels; returns ``rule``. Registering a type twice raises
    :class:`~onefit.errors.DuplicateNameError` (:func:`unregister_channel_rule` first, or
    use :func:`channel_rule` for a while).

    Example:
        >>> import onefit
        >>> from torch import nn
        >>> class Scale(nn.Module):  # a learned per-channel scale
        ...     def __init__(self, channels: int) -> None:
        ...         super().__init__()
        ...         self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...         return x * self.weight.view(1, -1, 1, 1)
        >>> class ScaleRule(onefit.convert.ChannelRule):
        ...     coupled = True  # its outputs are its input channels
        ...     def tensors(self, layer: nn.Module) -> dict[str, tuple[int, int]]:
        ...         return {"weight": (0, 0)}
        >>> model = nn.Sequential(nn.Conv2d(3, 32, 3), Scale(32), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        >>> x = torch.randn(1, 3, 8, 8)
        >>> onefit.elasticize(model, x, verbose=False).space.names  # Scale unknown: static
        ['r']
        >>> _ = onefit.convert.register_channel_rule(Scale, ScaleRule())
        >>> net = onefit.elasticize(model, x, verbose=False)
        >>> net.space.names, net.report.static_layers.get("1")
        (['w.0', 'r'], None)
        >>> _ = onefit.convert.unregister_channel_rule(Scale)
    """
    if not isinstance(layer_type, type) or not issubclass(layer_type, nn.Module):
        raise UserTypeError(f"layer_type must be an nn.Module subclass, got {layer_type!r}")
    if not isinstance(rule, ChannelRule):
        got = f"the class {rule.__name__}" if isinstance(rule, type) else type(rule).__name__
        raise UserTypeError(f"rule must be a ChannelRule instance, got {got}; e.g. MyRule()")
    if layer_type in BUILT_IN_TYPES:
        raise UserError(
            f"{_type_name(layer_type)} is converted by onefit itself; register a rule for "
            "your own subclass of it instead"
        )
    if layer_type in _RULES:
        raise DuplicateNameError(
            f"a channel rule for {_type_name(layer_type)} is already registered "
            f"({type(_RULES[layer_type]).__qualname__}); unregister_channel_rule it first"
        )
    _RULES[layer_type] = rule
    return rule


def unregister_channel_rule(layer_type: type[nn.Module]) -> ChannelRule:
    """Forget the rule for ``layer_type``; returns it. An unregistered type raises
    :class:`~onefit.errors.UnknownNameError`, listing the registered ones."""
    if layer_type not in _RULES:
        known = ", ".join(list_channel_rules()) or "(none)"
        raise UnknownNameError(
            f"no channel rule registered for {_type_name(layer_type)}; registered: {known}"
        )
    return _RULES.pop(layer_type)


@contextmanager
def channel_rule(layer_type: type[nn.Module], rule: ChannelRule) -> Iterator[ChannelRule]:
    """``rule`` registered for ``layer_type`` inside a ``with`` block only.

    Example:
        >>> class Gain(nn.Module):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.weight = nn.Parameter(torch.ones(4))
        >>> class GainRule(ChannelRule):
        ...     coupled = True
        ...     def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
        ...         return {"weight": (0, 0)}
        >>> with channel_rule(Gain, GainRule()):
        ...     find_channel_rule(Gain()) is not None
        True
        >>> find_channel_rule(Gain()) is None
        True
    """
    register_channel_rule(layer_type, rule)
    try:
        yield rule
    finally:
        if _RULES.get(layer_type) is rule:
            del _RULES[layer_type]


def list_channel_rules() -> list[str]:
    """The layer types with a registered channel rule, as ``module.QualifiedName``, sorted."""
    return sorted(_type_name(layer_type) for layer_type in _RULES)


def find_channel_rule(layer: nn.Module) -> ChannelRule | None:
    """The rule for ``layer``: its own type's, else its nearest registered base class's."""
    for layer_type in type(layer).__mro__:
        rule = _RULES.get(layer_type)
        if rule is not None:
            return rule
    return None
