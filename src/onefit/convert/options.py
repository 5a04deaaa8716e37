"""The settings of a conversion, in one place: :class:`ConversionOptions`.

:func:`onefit.elasticize`, :class:`~onefit.convert.ConvertedSupernet` and the
``torchvision`` supernet family all take one ``ConversionOptions``; ``elasticize`` and
the family also accept its fields as keyword arguments, which build one. It is frozen
and checked when made, so a bad value fails before any tracing, with a message saying
what was received and what is allowed; :meth:`ConversionOptions.to_dict` gives the
JSON form that supernet specs, checkpoints and model cards record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onefit.errors import UserError, UserTypeError

# "group": one width dimension per coupled channel group (BootstrapNAS); "global": one
# ratio for every group (slimmable networks), a far smaller space that short
# fine-tuning covers evenly.
WIDTH_MODES = ("group", "global")

# The width ratios when none are given: CNNs shrink to a quarter (BootstrapNAS);
# transformers to a half, since heads and MLP units lose more accuracy per cut (HAT,
# InstaTune).
CNN_WIDTH_RATIOS = (0.25, 0.5, 0.75, 1.0)
TRANSFORMER_WIDTH_RATIOS = (0.5, 0.75, 1.0)
# Layers kept per transformer encoder with elastic depth (as fractions of its layers).
TRANSFORMER_DEPTH_RATIOS = (0.5, 0.75, 1.0)
# Upper bounds: an input side (as for every supernet family) and the width rounding.
MAX_IMAGE_SIZE = 8192
MAX_ROUND_TO = 1024


@dataclass(frozen=True)
class ConversionOptions:
    """How :func:`onefit.elasticize` turns a model into a supernet.

    Example:
        >>> options = ConversionOptions(width_ratios=[0.5, 1.0], width_mode="global")
        >>> options.width_ratios, options.to_dict()["width_ratios"]
        ((0.5, 1.0), [0.5, 1.0])
        >>> ConversionOptions.from_dict(options.to_dict()) == options
        True
        >>> ConversionOptions(round_to=0)
        Traceback (most recent call last):
            ...
        onefit.errors.UserError: round_to must be a positive integer, got 0
    """

    # Fractions of each channel group's width offered as choices; None: 0.25..1 for
    # CNNs, 0.5..1 for transformers (see CNN_WIDTH_RATIOS), the original always included.
    width_ratios: tuple[float, ...] | None = None
    # Widths are multiples of 8, the channel counts vector units and tensor cores run
    # at full speed (and the rounding MobileNet and Once-for-All use).
    round_to: int = 8
    # Chains of residual blocks get an elastic depth (Once-for-All); False keeps all.
    depth: bool = True
    # Depthwise kernels of 5 or more also run as 3, 5, ... (Once-for-All's kernels).
    kernel: bool = True
    # Input sides to search; None: only the example input's, the one the model knows.
    resolutions: tuple[int, ...] | None = None
    # Channels re-ordered by importance first, so that narrow sub-networks keep the
    # most useful ones (Torch-Pruning's grouped magnitude); the full model is unchanged.
    sort: bool = True
    # "group": a width per channel group, the richest space; "global": one ratio for
    # all groups (slimmable networks), which a short fine-tuning covers far better.
    width_mode: str = "group"

    def __post_init__(self) -> None:
        ratios = self.width_ratios
        if ratios is not None:
            if not _numbers(ratios) or not all(0 < r <= 1 for r in ratios):
                raise UserError(
                    "width_ratios must be a non-empty list of numbers in (0, 1] (fractions "
                    f"of each layer's channels), got {ratios!r}"
                )
            _distinct("width_ratios", ratios)
            object.__setattr__(self, "width_ratios", tuple(float(r) for r in ratios))
        if not _integer(self.round_to):
            raise UserTypeError(f"round_to must be a positive integer, got {self.round_to!r}")
        if self.round_to < 1:
            raise UserError(f"round_to must be a positive integer, got {self.round_to!r}")
        if self.round_to > MAX_ROUND_TO:
            raise UserError(f"round_to must be at most {MAX_ROUND_TO}, got {self.round_to!r}")
        for name in ("depth", "kernel", "sort"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise UserError(f"{name} must be True or False, got {value!r}")
        sides = self.resolutions
        if sides is not None:
            if not _numbers(sides) or not all(
                _integer(r) and 1 <= r <= MAX_IMAGE_SIZE for r in sides
            ):
                raise UserError(
                    f"resolutions must be a non-empty list of positive integers up to "
                    f"{MAX_IMAGE_SIZE}, got {sides!r}"
                )
            _distinct("resolutions", sides)
            object.__setattr__(self, "resolutions", tuple(int(r) for r in sides))
        if not isinstance(self.width_mode, str) or self.width_mode not in WIDTH_MODES:
            raise UserError(
                f"width_mode must be one of {list(WIDTH_MODES)}, got {self.width_mode!r}"
            )

    @classmethod
    def build(
        cls, options: ConversionOptions | Mapping[str, Any] | None = None, **overrides: Any
    ) -> ConversionOptions:
        """``options`` (an object, its :meth:`to_dict` form, or the defaults) with
        ``overrides`` replacing fields; an unknown field name raises ``TypeError``.

        Example:
            >>> ConversionOptions.build({"depth": False}, round_to=4).round_to
            4
        """
        if options is None:
            base = cls()
        elif isinstance(options, ConversionOptions):
            base = options
        elif isinstance(options, Mapping):
            base = cls.from_dict(options)
        else:
            raise UserTypeError(
                "options must be a ConversionOptions or a dict of its fields, got "
                f"{type(options).__name__}"
            )
        _check_names(overrides)
        return dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversionOptions:
        """The options :meth:`to_dict` wrote (missing fields take their defaults)."""
        _check_names(data)
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able (tuples as lists)."""
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def cnn_width_ratios(self) -> tuple[float, ...]:
        """The width ratios for a traced CNN: as given, else :data:`CNN_WIDTH_RATIOS`."""
        return self.width_ratios or CNN_WIDTH_RATIOS

    def transformer_width_ratios(self) -> tuple[float, ...]:
        """The ratios for transformer widths: as given, else :data:`TRANSFORMER_WIDTH_RATIOS`."""
        return self.width_ratios or TRANSFORMER_WIDTH_RATIOS

    def transformer_depth_ratios(self) -> tuple[float, ...]:
        """The fractions of encoder layers to keep: all only, without elastic depth."""
        return TRANSFORMER_DEPTH_RATIOS if self.depth else (1.0,)


def option_names() -> list[str]:
    """The fields of :class:`ConversionOptions`, in order."""
    return [field.name for field in dataclasses.fields(ConversionOptions)]


def _check_names(names: Mapping[str, Any]) -> None:
    unknown = sorted(set(names) - set(option_names()))
    if unknown:
        raise UserTypeError(
            f"unknown conversion option(s) {', '.join(map(repr, unknown))}; "
            f"the options are: {', '.join(option_names())}"
        )


def _numbers(values: object) -> bool:
    """A non-empty list or tuple of real numbers (not booleans)."""
    return (
        isinstance(values, Sequence)
        and not isinstance(values, str)
        and len(values) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    )


def _distinct(name: str, values: Sequence[Any]) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise UserError(f"{name} lists a choice twice ({value!r}): {list(values)!r}")
        seen.add(value)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
