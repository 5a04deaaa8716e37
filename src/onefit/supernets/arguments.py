"""Checks of supernet constructor arguments, shared by every family.

Each family checks its arguments here before it allocates anything: the type (a
string where an integer belongs is a :class:`~onefit.errors.UserTypeError`), the range
(positive, finite, below a sensible upper bound) and, once the sizes are known, an
estimate of the memory the weights need against the memory of the machine
(:func:`check_memory`). Every message names the argument, the value received and what
is allowed.

Example:
    >>> check_int("num_classes", 10, maximum=MAX_CLASSES)
    10
    >>> check_int("num_classes", "10")
    Traceback (most recent call last):
        ...
    onefit.errors.UserTypeError: num_classes must be a positive integer, got '10' (str)
    >>> check_number("dropout", float("nan"), minimum=0, maximum=1, high_open=True)
    Traceback (most recent call last):
        ...
    onefit.errors.UserError: dropout must be a finite number in [0, 1), got nan
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from onefit.errors import UserError, UserTypeError

# Upper bounds far above any real model, low enough that a typo (10**12 classes) fails
# here with its name rather than in the allocator.
MAX_CLASSES = 10_000_000
MAX_CHANNELS = 4096  # input channels
MAX_IMAGE_SIZE = 8192  # an image side, in pixels
MAX_SEQUENCE = 1 << 20  # a token sequence length
MAX_VOCAB = 10_000_000
MAX_WIDTH = 1 << 16  # any layer width, head width, embedding width
MAX_HEADS = 1024
MAX_DEPTH = 1000  # blocks or layers
MAX_KERNEL = 31
MAX_RATIO = 64.0  # expand ratios, width multipliers, MLP ratios
BYTES_PER_PARAMETER = 4  # float32


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; :class:`UserTypeError` for a
    non-integer (a bool, a float, a string), :class:`UserError` out of range."""
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UserTypeError(f"{name} must be {kind}, got {value!r} ({_type_name(value)})")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        limit = f" up to {maximum}" if maximum is not None else ""
        raise UserError(f"{name} must be {kind}{limit}, got {number}")
    return number


def _interval(minimum: float, maximum: float | None, low_open: bool, high_open: bool) -> str:
    low = f"({minimum:g}" if low_open else f"[{minimum:g}"
    high = "inf)" if maximum is None else (f"{maximum:g})" if high_open else f"{maximum:g}]")
    return f"{low}, {high}"


def _in_range(
    number: float, minimum: float, maximum: float | None, low_open: bool, high_open: bool
) -> bool:
    if not math.isfinite(number):
        return False
    if number < minimum or (low_open and number == minimum):
        return False
    return maximum is None or number < maximum or (number == maximum and not high_open)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval ``minimum..maximum`` (open at an end
    when ``low_open``/``high_open``); :class:`UserTypeError` for a non-number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise UserTypeError(f"{name} must be a number, got {value!r} ({_type_name(value)})")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not _in_range(number, minimum, maximum, low_open, high_open):
        interval = _interval(minimum, maximum, low_open, high_open)
        raise UserError(f"{name} must be a finite number in {interval}, got {value!r}")
    return number


def check_choices(
    name: str,
    values: object,
    *,
    integer: bool = False,
    minimum: float = 0,
    strict: bool = False,
    maximum: float | None = None,
    distinct: bool = True,
) -> tuple[Any, ...]:
    """Check a constructor's list of choices; returns it as a tuple.

    It must be a non-empty list or tuple of finite numbers (ints when ``integer``),
    each at least ``minimum`` (greater than it when ``strict``) and at most
    ``maximum``, and distinct unless ``distinct`` is False (a list of per-stage values
    rather than choices).

    Example:
        >>> check_choices("depths", [2, 3], integer=True, minimum=1)
        (2, 3)
        >>> check_choices("depths", [2, 2], integer=True, minimum=1)
        Traceback (most recent call last):
            ...
        onefit.errors.UserError: depths lists a choice twice (2): [2, 2]
    """
    kind = "integers" if integer else "numbers"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    limit = f" and <= {maximum:g}" if maximum is not None else ""
    wanted = f"{name} must be a non-empty list of {kind} {bound}{limit}"
    if not isinstance(values, (list, tuple)):
        raise UserTypeError(f"{wanted}, got {values!r} ({_type_name(values)})")
    if not values:
        raise UserError(f"{wanted}, got an empty {_type_name(values)}")
    checked = []
    for value in values:
        if integer:
            is_kind = isinstance(value, (int, np.integer))
        else:
            is_kind = isinstance(value, (int, float, np.integer, np.floating))
        if isinstance(value, (bool, np.bool_)) or not is_kind:
            raise UserTypeError(f"{wanted}, got {values!r} (holding {value!r})")
        plain = int(value) if integer else value.item() if isinstance(value, np.generic) else value
        try:
            number = float(plain)
        except OverflowError:
            number = math.inf
        if not _in_range(number, minimum, maximum, strict, False):
            raise UserError(f"{wanted}, got {values!r} (holding {value!r})")
        checked.append(plain)
    seen: set[Any] = set()
    for value in checked if distinct else ():
        if value in seen:
            raise UserError(f"{name} lists a choice twice ({value!r}): {list(values)!r}")
        seen.add(value)
    return tuple(checked)


def check_resolutions(values: object, maximum: int = MAX_IMAGE_SIZE) -> tuple[int, ...]:
    """The ``r`` choices: distinct integers from 1 to ``maximum``."""
    return check_choices("resolutions", values, integer=True, minimum=1, maximum=maximum)


def memory_limit_bytes() -> int | None:
    """The machine's physical memory in bytes, or None where it cannot be read."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not POSIX, or the name is unknown
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return int(pages) * int(page_size)


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_memory(family: str, parameters: int, arguments: Sequence[str] = ()) -> None:
    """Refuse a supernet whose weights alone would not fit in the machine's memory.

    ``parameters`` is an estimate of the weights the constructor will allocate (the
    largest sub-network's, which every family holds); ``arguments`` names the
    arguments that drive it, for the message.

    Example:
        >>> check_memory("mobilenetv3", 10**15, ["num_classes"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        onefit.errors.UserError: a mobilenetv3 supernet with these arguments needs about ...
    """
    limit = memory_limit_bytes()
    needed = parameters * BYTES_PER_PARAMETER
    if limit is not None and needed > limit:
        named = f" (check {', '.join(arguments)})" if arguments else ""
        raise UserError(
            f"a {family} supernet with these arguments needs about {_human(needed)} for its "
            f"{parameters:,} weights, more than this machine's {_human(limit)} of memory"
            f"{named}"
        )
