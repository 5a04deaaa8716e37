"""What every supernet offers, whatever its family.

A supernet is an ``nn.Module`` with a :class:`~onefit.space.SearchSpace`. Choosing a
config with :meth:`Supernet.set_active` makes ``forward`` run that sub-network on the
shared weights; :meth:`Supernet.extract` copies the same sub-network out as a plain
static model; :meth:`Supernet.cost` gives its exact MACs and parameters without
building anything. A family implements four hooks: ``_activate``, ``_forward``,
``_build_static`` and ``cost``.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from onefit.metrics.counting import Cost
from onefit.space import ArchConfig, SearchSpace, Seed
from onefit.supernets.arguments import (
    MAX_IMAGE_SIZE,
    check_int,
    check_resolutions,
)
from onefit.supernets.arguments import check_choices as check_choices  # re-exported
from onefit.supernets.inputs import InputSpec


class Supernet(nn.Module, ABC):
    """Base class of weight-shared elastic networks.

    Subclasses set ``self.space``, ``self.input_spec`` (what an input is; image
    families have a resolution dimension ``"r"``), ``self.in_channels`` and
    ``self.num_classes`` in ``__init__`` and call ``self.set_active(self.space.largest())``
    at its end.
    """

    space: SearchSpace
    # {"name", "kwargs"} when built by create_supernet: enough to rebuild the family.
    spec: dict[str, Any] | None = None
    in_channels: int
    num_classes: int
    # What one input is (images of some sides, token ids of some length): set by every
    # family in __init__, before its first set_active.
    input_spec: InputSpec
    _active: ArchConfig

    # -- choosing the sub-network ------------------------------------------------------------
    def set_active(self, config: Mapping[str, Any]) -> ArchConfig:
        """Make ``forward`` run the sub-network ``config``; returns it validated.

        Raises ``ValueError`` naming the bad dimension and the allowed values.
        """
        validated = self.space.validate(config)
        self._activate(validated)
        self._active = validated
        return validated

    @property
    def active_config(self) -> ArchConfig:
        return self._active

    def set_largest(self) -> ArchConfig:
        return self.set_active(self.space.largest())

    def set_smallest(self) -> ArchConfig:
        return self.set_active(self.space.smallest())

    def sample_active(self, seed: Seed = None) -> ArchConfig:
        """Activate a uniformly sampled sub-network and return its config."""
        return self.set_active(self.space.sample(seed))

    # -- running ------------------------------------------------------------------------------
    @property
    def resolutions(self) -> tuple[int, ...]:
        """The choices of ``r``, the input sides this supernet accepts (images)."""
        return tuple(int(r) for r in self.space["r"].choices) if "r" in self.space else ()

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype of an input batch (float images, or ``torch.long`` token ids)."""
        return self.input_spec.dtype

    def input_shape(self, config: Mapping[str, Any] | None = None) -> tuple[int, ...]:
        """The shape of one input for ``config`` (default: the active one), e.g.
        ``(channels, r, r)`` for images or ``(length,)`` for token ids."""
        cfg = self._active if config is None else self.space.validate(config)
        return self.input_spec.shape(cfg)

    def example_input(
        self, batch_size: int = 1, config: Mapping[str, Any] | None = None, *, seed: int = 0
    ) -> torch.Tensor:
        """A random batch this supernet accepts for ``config`` (normal images, or token
        ids for text families), on the supernet's device."""
        cfg = self._active if config is None else self.space.validate(config)
        device = next(self.parameters()).device
        return self.input_spec.example(batch_size, cfg, seed=seed, device=device)

    def require_images(self, what: str) -> None:
        """Raise ``ValueError`` if this supernet does not read images (``what`` needs them)."""
        self.input_spec.require("image", what)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``x`` is a batch this supernet accepts."""
        self.input_spec.check(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self._forward(x)

    # -- static sub-networks and their cost --------------------------------------------------
    def extract(self, config: Mapping[str, Any] | None = None) -> nn.Module:
        """A standalone copy of sub-network ``config`` (default: the active one), in eval mode.

        The result is built from ``torch.nn`` layers (plus :mod:`onefit.static`), holds
        copies of the shared weights, and neither needs nor changes the supernet.
        """
        cfg = self._active if config is None else self.space.validate(config)
        static = self._build_static(cfg)
        param = next(self.parameters())
        return static.to(device=param.device, dtype=param.dtype).eval()

    def macs(self, config: Mapping[str, Any] | None = None) -> int:
        """Exact MACs of sub-network ``config`` for one image (default: the active one)."""
        return self.cost(self._active if config is None else config).macs

    def params(self, config: Mapping[str, Any] | None = None) -> int:
        """Exact parameter count of the extracted sub-network ``config``."""
        return self.cost(self._active if config is None else config).params

    @contextmanager
    def frozen(self) -> Iterator[Supernet]:
        """Run sub-networks at static-model speed while the weights do not change.

        Inside the block, forward passes without autograd reuse each layer's sliced and
        kernel-transformed weights for as long as the same config runs, instead of
        recomputing them on every call (see BENCHMARKS.md). Use it for evaluation,
        search and latency measurement; do not update the weights inside it (an
        optimizer step or a write through ``.data`` would not be seen).

        Example:
            >>> import onefit
            >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=8).eval()
            >>> with net.frozen(), torch.no_grad():
            ...     logits = net(torch.zeros(1, 3, 8, 8))
        """
        # getattr, not m.set_frozen: nn.Module.__getattr__ is typed as returning tensors.
        switches = [getattr(m, "set_frozen") for m in self.modules() if hasattr(m, "set_frozen")]  # noqa: B009
        for switch in switches:
            switch(True)
        try:
            yield self
        finally:
            for switch in switches:
                switch(False)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Re-sort every elastic block's hidden channels by importance, most important first.

        Width slicing keeps a prefix of channels, so sorting before shrinking lets small
        sub-networks keep the most useful ones (Once-for-All, Sec. 3.2). The largest
        sub-network computes exactly the same function before and after.
        """
        for module in self.modules():
            sort = getattr(module, "sort_channels", None)
            if module is not self and callable(sort):
                sort()

    # -- latency lookup tables ----------------------------------------------------------------
    def units(self, config: Mapping[str, Any]) -> list[str]:
        """One key per top-level layer of ``extract(config)``, in order.

        Equal keys mean layers of identical structure run on inputs of identical shape,
        so one latency measurement serves them all (see :mod:`onefit.profiling`). This
        generic version extracts the sub-network and runs one zero image through it, so
        it is slow; families override it with an analytic version (microseconds).
        """
        model = self.extract(config)
        x = torch.zeros(1, *self.input_shape(config), device=next(self.parameters()).device)
        keys = []
        with torch.no_grad():
            for layer in model.children():
                keys.append(f"{layer!r}|{tuple(x.shape[1:])}")
                x = layer(x)
        return keys

    def profiling_configs(self) -> list[ArchConfig]:
        """Configs whose units together cover every unit of every config.

        The default takes, for every resolution, the cartesian product over dimension
        groups (the name before the first ``.``) of "all dimensions of the group at the
        same choice index". That covers every unit when a unit depends on one choice per
        group (true of Once-for-All's MobileNetV3); families whose units depend on two
        choices of one group (ResNet's stage widths) override it.
        """
        groups: dict[str, list[str]] = {}
        for name in self.space.names:
            groups.setdefault(name.split(".")[0], []).append(name)
        ranges = [range(max(len(self.space[n]) for n in names)) for names in groups.values()]
        configs = []
        for indices in itertools.product(*ranges):
            choice = {}
            for names, index in zip(groups.values(), indices):
                for n in names:
                    choices = self.space[n].choices
                    choice[n] = choices[min(index, len(choices) - 1)]
            configs.append(self.space.validate(choice))
        return list(dict.fromkeys(configs))

    # -- what a family implements -----------------------------------------------------------
    @abstractmethod
    def cost(self, config: Mapping[str, Any]) -> Cost:
        """Analytic MACs and parameters of the extracted sub-network ``config``."""

    @abstractmethod
    def _activate(self, config: ArchConfig) -> None:
        """Set the elastic modules' active choices for ``config`` (already validated)."""

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the active sub-network on a checked input batch."""

    @abstractmethod
    def _build_static(self, config: ArchConfig) -> nn.Module:
        """Build the static model of ``config`` with copied weights."""


def check_positive_int(name: str, value: object, maximum: int | None = None) -> None:
    """Raise a ``UserError`` unless ``value`` is an int from 1 to ``maximum`` (a
    ``UserTypeError`` for a non-integer); see :mod:`onefit.supernets.arguments`."""
    check_int(name, value, minimum=1, maximum=maximum)


# Resolutions Once-for-All trains and searches at ImageNet scale.
OFA_RESOLUTIONS = (128, 144, 160, 176, 192, 208, 224)


def default_resolutions(image_size: int, resolutions: object = None) -> tuple[int, ...]:
    """The ``r`` choices: as given, else OFA's 128..224 for 224 inputs, else ``(image_size,)``."""
    check_positive_int("image_size", image_size, MAX_IMAGE_SIZE)
    if resolutions is None:
        return OFA_RESOLUTIONS if image_size == 224 else (image_size,)
    return check_resolutions(resolutions)
