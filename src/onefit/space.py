"""Search spaces as data: named categorical dimensions and architecture configs.

A :class:`SearchSpace` is an ordered set of named dimensions, each a finite list of
choices (``"ks.0": [3, 5, 7]``). It knows nothing about networks, so the same object
describes a supernet's space or any space a user writes down. An :class:`ArchConfig`
is one point of a space: an immutable, hashable mapping with a canonical JSON form,
so it can key a dictionary or a results database.

Example:
    >>> space = SearchSpace({"op": ["conv3", "skip"], "depth": [3, 1, 2]})
    >>> space.size
    6
    >>> space.largest()
    ArchConfig({"depth":3,"op":"skip"})
    >>> cfg = space.validate({"op": "conv3", "depth": 2})
    >>> ArchConfig.from_json(cfg.to_json()) == cfg
    True
    >>> space.encode([cfg], "onehot").tolist()
    [[1.0, 0.0, 0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal

import numpy as np

from onefit.errors import UnknownKeyError, UserError, UserTypeError

Choice = int | float | str | bool
Encoding = Literal["onehot", "ordinal"]
Seed = int | np.random.Generator | None

_ENCODINGS = ("onehot", "ordinal")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _plain(value: Any) -> Choice:
    """Turn numpy scalars into the Python scalars JSON and hashing expect."""
    if isinstance(value, np.generic):
        return value.item()
    return value


# The kinds of choice a dimension may hold, one kind per dimension (see Dimension).
KINDS = ("int", "number", "str", "bool")
# How many choices an error message lists before it abbreviates.
_SHOWN = 12


def _show(values: Sequence[Any]) -> str:
    """``values`` as a list for an error message, abbreviated when long."""
    if len(values) <= _SHOWN:
        return repr(list(values))
    head = ", ".join(repr(v) for v in values[:_SHOWN])
    return f"[{head}, ... ({len(values)} in all)]"


def _kind(value: object) -> str | None:
    """The kind of one choice or config value, or None when it is none of :data:`KINDS`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    return None


def _scalar_problem(value: object) -> str | None:
    """Why ``value`` cannot be a choice or a config value (None when it can)."""
    kind = _kind(value)
    if kind is None:
        what = type(value).__name__
        hint = (
            "; spread a list over numbered dimensions ('ks.0', 'ks.1', ...: see flatten_lists)"
            if isinstance(value, (list, tuple))
            else ""
        )
        return f"{value!r} is a {what}, not an int, float, str or bool{hint}"
    if kind == "number" and not math.isfinite(float(value)):  # type: ignore[arg-type]
        return f"{value!r} is not finite (JSON has no NaN or infinity)"
    if kind == "str":
        try:
            str(value).encode("utf-8")
        except UnicodeEncodeError:
            return f"{value!r} is not valid text (it holds a lone surrogate)"
    return None


def strict_json(text: object, what: str) -> Any:
    """Parse standard JSON (no NaN/Infinity), with a UserError naming ``what`` otherwise.

    Example:
        >>> strict_json('{"a": [1, 2]}', "a config")
        {'a': [1, 2]}
        >>> strict_json('{"a": NaN}', "a config")
        Traceback (most recent call last):
            ...
        onefit.errors.UserError: a config holds NaN, which standard JSON does not allow
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{what} is not UTF-8 text: {error}") from None
    if not isinstance(text, str):
        raise UserTypeError(f"{what} must be JSON text, got {type(text).__name__}")

    def refuse(name: str) -> Any:
        raise UserError(f"{what} holds {name}, which standard JSON does not allow")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as error:
        raise UserError(f"{what} is not valid JSON: {error}") from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply") from None


def as_rng(seed: Seed) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator (returned as is) or None."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


class ArchConfig(Mapping[str, Choice]):
    """An immutable architecture config: dimension name -> chosen value.

    Keys are kept sorted, so two configs with the same items are equal, hash the same
    and print the same JSON whatever order they were built in.

    Example:
        >>> a = ArchConfig({"b": 1, "a": "x"})
        >>> a.to_json()
        '{"a":"x","b":1}'
        >>> a == ArchConfig.from_json('{"b": 1, "a": "x"}')
        True
    """

    __slots__ = ("_dict", "_hash", "_items")

    def __init__(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise UserTypeError(
                f"an ArchConfig is built from a mapping, got {type(values).__name__}"
            )
        keys = list(values)
        for key in keys:
            if not isinstance(key, str):
                raise UserTypeError(f"config keys must be strings, got {key!r}")
        items = []
        for key in sorted(keys):
            value = _plain(values[key])
            problem = _scalar_problem(value)
            if problem:
                raise UserTypeError(
                    f"config value for {key!r} must be an int, float, str or bool: {problem}"
                )
            items.append((key, value))
        self._items: tuple[tuple[str, Choice], ...] = tuple(items)
        self._dict: dict[str, Choice] = dict(items)
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> Choice:
        return self._dict[key]

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._dict
        except TypeError:  # unhashable
            return False

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArchConfig):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"ArchConfig({self.to_json()})"

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces. Equal configs give equal strings."""
        return json.dumps(self._dict, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        """Parse a config written by :meth:`to_json` (or any JSON object of scalars).

        Only standard JSON is read: ``NaN`` or ``Infinity`` in the text is an error.
        """
        data = strict_json(text, "a config JSON")
        if not isinstance(data, dict):
            raise UserError(f"a config JSON must be an object, got {type(data).__name__}")
        return cls(data)

    def replace(self, **changes: Any) -> ArchConfig:
        """A copy with some values changed (keys with dots: use ``ArchConfig({**c, k: v})``)."""
        return ArchConfig({**self._dict, **changes})


class Dimension:
    """One named categorical dimension: a finite, ordered list of distinct choices.

    Every choice of a dimension is of one kind (:data:`KINDS`), so that it has one
    JSON form and one order:

    * ``"int"``: integers; ``"number"``: floats, or floats and integers together (the
      same choice may be written ``3`` or ``3.0``); these are sorted ascending, so
      index 0 is the smallest and the last the largest;
    * ``"str"``: strings; ``"bool"``: ``True``/``False``; these keep the order given.

    Choices must be finite (no NaN or infinity: JSON has neither), distinct (``1`` and
    ``1.0`` are the same choice) and given in an order: a list, tuple or range (a
    ``set`` is refused, since its order changes with Python's hash seed and so would
    every config drawn from it). A choice is a scalar; a list-valued choice is spread
    over numbered dimensions (``"ks.0"``, ``"ks.1"``, see :func:`flatten_lists`).
    Booleans and numbers do not mix (``True == 1`` in Python).

    Example:
        >>> Dimension("e", [6, 3, 4.5]).choices
        (3, 4.5, 6)
        >>> Dimension("e", {3, 4})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        onefit.errors.UserTypeError: dimension 'e': choices must be given in an order ...
    """

    __slots__ = ("_index", "choices", "kind", "name")

    def __init__(self, name: str, choices: Iterable[Any]) -> None:
        if not isinstance(name, str) or not name:
            raise UserError(f"a dimension name must be a non-empty string, got {name!r}")
        if _scalar_problem(name):
            raise UserError(f"dimension name {name!r} is not valid text")
        if isinstance(choices, (set, frozenset, AbstractSet)) and not isinstance(choices, KeysView):
            raise UserTypeError(
                f"dimension {name!r}: choices must be given in an order (a list, tuple or "
                f"range), got a {type(choices).__name__}; a set's order depends on Python's "
                "hash seed, so every run would see other configs: write sorted(...) or a list"
            )
        ordered = isinstance(choices, (Sequence, np.ndarray, Iterator, KeysView))
        if isinstance(choices, (str, bytes, bytearray, Mapping)) or not ordered:
            raise UserTypeError(
                f"dimension {name!r}: choices must be a list of values, got {choices!r}"
            )
        try:
            values = [_plain(c) for c in choices]
        except TypeError as error:  # e.g. a 0-d numpy array
            raise UserTypeError(f"dimension {name!r}: choices must be a list: {error}") from None
        if not values:
            raise UserError(f"dimension {name!r} has no choices")
        kinds: set[str] = set()
        for value in values:
            problem = _scalar_problem(value)
            if problem:
                raise UserError(
                    f"dimension {name!r}: choices must be int, float, str or bool; {problem}"
                )
            kinds.add(_kind(value) or "")
        if kinds == {"int", "number"}:
            kinds = {"number"}
        if len(kinds) > 1:
            raise UserError(
                f"dimension {name!r} mixes kinds of choice ({', '.join(sorted(kinds))}): "
                f"{_show(values)}; all choices of a dimension must be integers, numbers, "
                "strings or booleans"
            )
        kind = kinds.pop()
        # One pass with a dict of what was seen (equal under ==, such as 1 and 1.0, is one
        # choice twice): linear in the number of choices.
        index: dict[Choice, int] = {}
        for value in values:
            if value in index:
                raise UserError(
                    f"dimension {name!r} lists a choice twice ({value!r}): {_show(values)}"
                )
            index[value] = len(index)
        if kind in ("int", "number"):
            values = sorted(values)
            index = {v: i for i, v in enumerate(values)}
        self.name = name
        self.kind: str = kind
        self.choices: tuple[Choice, ...] = tuple(values)
        self._index = index

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices; a ``UserError`` naming the dimension,
        the value and the allowed values if it is not one (``3.0`` finds ``3``)."""
        value = _plain(value)
        kind = _kind(value)
        same_kind = kind == self.kind or ({kind, self.kind} <= {"int", "number"})
        found = None
        if same_kind:
            try:
                found = self._index.get(value)
            except TypeError:  # pragma: no cover - scalars are hashable
                found = None
        if found is None:
            raise UserError(
                f"dimension {self.name!r}: {value!r} is not allowed; "
                f"allowed values: {_show(self.choices)}"
            )
        return found

    def __len__(self) -> int:
        return len(self.choices)

    def __repr__(self) -> str:
        return f"Dimension({self.name!r}, {list(self.choices)})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Dimension)
            and self.name == other.name
            and self.choices == other.choices
        )

    def __hash__(self) -> int:
        return hash((self.name, self.choices))


class SearchSpace:
    """An ordered set of named categorical dimensions.

    Build it from a mapping ``{name: choices}`` or a sequence of :class:`Dimension`.

    Example:
        >>> space = SearchSpace({"ks.0": [3, 5, 7], "e.0": [3, 4, 6], "r": [160, 224]})
        >>> space.size
        18
        >>> cfg = space.sample(seed=0)
        >>> space.decode(space.encode([cfg], "ordinal"), "ordinal") == [cfg]
        True
    """

    def __init__(self, dimensions: Mapping[str, Iterable[Any]] | Sequence[Dimension]) -> None:
        if isinstance(dimensions, Mapping):
            dims = [Dimension(name, choices) for name, choices in dimensions.items()]
        elif isinstance(dimensions, (list, tuple)):
            dims = list(dimensions)
            for dim in dims:
                if not isinstance(dim, Dimension):
                    raise UserTypeError(
                        f"a search space is built from a mapping {{name: [choices]}} or a list "
                        f"of Dimension objects; the list holds {dim!r}"
                    )
        else:
            raise UserTypeError(
                "a search space is built from a mapping {name: [choices]} or a list of "
                f"Dimension objects, got {type(dimensions).__name__}"
            )
        if not dims:
            raise UserError("a search space needs at least one dimension")
        seen: set[str] = set()
        repeated: set[str] = set()
        for dim in dims:
            (repeated if dim.name in seen else seen).add(dim.name)
        if repeated:
            raise UserError(f"dimension names must be unique; repeated: {sorted(repeated)}")
        self.dimensions: tuple[Dimension, ...] = tuple(dims)
        self._by_name = {d.name: d for d in dims}
        # Column offsets of each dimension in the one-hot encoding.
        widths = [len(d) for d in dims]
        self._onehot_offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
        self.onehot_width = int(sum(widths))

    # -- basic facts -------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Dimension names in order."""
        return [d.name for d in self.dimensions]

    @property
    def size(self) -> int:
        """Number of distinct configs (an exact Python int, possibly huge)."""
        return math.prod(len(d) for d in self.dimensions)

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownKeyError(f"no dimension {name!r}; dimensions: {self.names}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.dimensions == other.dimensions

    def __hash__(self) -> int:
        return hash(self.dimensions)

    def __repr__(self) -> str:
        inner = ", ".join(f"{d.name!r}: {list(d.choices)}" for d in self.dimensions)
        return f"SearchSpace({{{inner}}})"

    def to_dict(self) -> dict[str, list[Choice]]:
        """``{name: choices}``, the form the constructor takes."""
        return {d.name: list(d.choices) for d in self.dimensions}

    def to_json(self) -> str:
        """Standard JSON ``{name: [choices]}`` (choices are finite, so no NaN appears)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        """The space :meth:`to_json` wrote; NaN or Infinity in the text is an error."""
        data = strict_json(text, "a search space JSON")
        if not isinstance(data, dict):
            raise UserError("a search space JSON must be an object {name: [choices]}")
        return cls(data)

    # -- configs -------------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any]) -> ArchConfig:
        """Check ``config`` against the space and return it in canonical form.

        Raises :class:`~onefit.errors.UserError` naming the missing or unknown
        dimension, or the dimension, the bad value and the allowed values.

        Example:
            >>> SearchSpace({"k": [3, 5]}).validate({"k": 4})
            Traceback (most recent call last):
                ...
            onefit.errors.UserError: dimension 'k': 4 is not allowed; allowed values: [3, 5]
        """
        if not isinstance(config, Mapping):
            raise UserTypeError(
                f"a config is a mapping from dimension name to value, got {type(config).__name__}"
            )
        missing = [n for n in self.names if n not in config]
        if missing:
            raise UserError(f"config is missing dimension(s) {_show(missing)}")
        unknown = [k for k in config if not isinstance(k, str) or k not in self._by_name]
        if unknown:
            raise UserError(
                f"config has unknown dimension(s) {_show(unknown)}; known: {_show(self.names)}"
            )
        return ArchConfig({d.name: d.choices[d.index(config[d.name])] for d in self.dimensions})

    def from_indices(self, indices: Sequence[int]) -> ArchConfig:
        """The config whose dimension ``i`` takes its ``indices[i]``-th choice."""
        if len(indices) != len(self.dimensions):
            raise UserError(f"expected {len(self.dimensions)} indices, got {len(indices)}")
        values = {}
        for dim, i in zip(self.dimensions, indices):
            if not 0 <= int(i) < len(dim):
                raise UserError(f"dimension {dim.name!r}: index {i} outside 0..{len(dim) - 1}")
            values[dim.name] = dim.choices[int(i)]
        return ArchConfig(values)

    def to_indices(self, config: Mapping[str, Any]) -> list[int]:
        """Choice index of every dimension, in dimension order."""
        config = self.validate(config)
        return [d.index(config[d.name]) for d in self.dimensions]

    # -- sampling and enumeration ----------------------------------------------------------
    def sample(self, seed: Seed = None) -> ArchConfig:
        """One config drawn uniformly at random (reproducible for an int seed)."""
        rng = as_rng(seed)
        return self.from_indices([int(rng.integers(len(d))) for d in self.dimensions])

    def sample_many(self, n: int, seed: Seed = None) -> list[ArchConfig]:
        """``n`` independent uniform draws (repeats possible)."""
        rng = as_rng(seed)
        return [self.sample(rng) for _ in range(n)]

    def smallest(self) -> ArchConfig:
        """Every dimension at its first (numerically smallest) choice."""
        return self.from_indices([0] * len(self.dimensions))

    def largest(self) -> ArchConfig:
        """Every dimension at its last (numerically largest) choice."""
        return self.from_indices([len(d) - 1 for d in self.dimensions])

    def __iter__(self) -> Iterator[ArchConfig]:
        """Every config, in lexicographic order of choice indices (mind :attr:`size`)."""
        for indices in itertools.product(*(range(len(d)) for d in self.dimensions)):
            yield self.from_indices(indices)

    # -- encodings for predictors ------------------------------------------------------------
    def encode(self, configs: Iterable[Mapping[str, Any]], kind: Encoding = "onehot") -> np.ndarray:
        """Fixed-length float vectors, one row per config.

        ``"onehot"``: one column per choice of every dimension (width
        :attr:`onehot_width`). ``"ordinal"``: one column per dimension holding the choice
        index (0 = smallest).
        """
        if isinstance(configs, Mapping):
            raise UserTypeError("encode takes a list of configs; wrap a single config in a list")
        indices = np.array([self.to_indices(c) for c in configs], dtype=np.int64)
        indices = indices.reshape(-1, len(self.dimensions))
        if kind == "ordinal":
            return indices.astype(np.float64)
        if kind == "onehot":
            out = np.zeros((len(indices), self.onehot_width))
            rows = np.arange(len(indices))[:, None]
            out[rows, indices + self._onehot_offsets] = 1.0
            return out
        raise UserError(f"unknown encoding {kind!r}; choose one of {list(_ENCODINGS)}")

    def decode(self, vectors: np.ndarray, kind: Encoding = "onehot") -> list[ArchConfig]:
        """Inverse of :meth:`encode`. One-hot rows decode by arg-max within each dimension."""
        array = np.asarray(vectors, dtype=np.float64)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise UserError(f"expected a vector or a 2-D array of vectors, got shape {array.shape}")
        if kind == "ordinal":
            if array.shape[1] != len(self.dimensions):
                raise UserError(
                    f"ordinal vectors have {len(self.dimensions)} columns, got {array.shape[1]}"
                )
            indices = np.rint(array).astype(np.int64)
        elif kind == "onehot":
            if array.shape[1] != self.onehot_width:
                raise UserError(
                    f"one-hot vectors have {self.onehot_width} columns, got {array.shape[1]}"
                )
            indices = np.stack(
                [
                    np.argmax(array[:, start : start + len(dim)], axis=1)
                    for start, dim in zip(self._onehot_offsets, self.dimensions)
                ],
                axis=1,
            )
        else:
            raise UserError(f"unknown encoding {kind!r}; choose one of {list(_ENCODINGS)}")
        return [self.from_indices(row.tolist()) for row in indices]


def flatten_lists(values: Mapping[str, Any]) -> dict[str, Any]:
    """Spread list values over numbered keys, the layout of onefit's dimension names.

    Example:
        >>> flatten_lists({"ks": [3, 7], "d": [2], "r": 224})
        {'ks.0': 3, 'ks.1': 7, 'd.0': 2, 'r': 224}
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            flat.update({f"{key}.{i}": v for i, v in enumerate(value)})
        else:
            flat[key] = value
    return flat


def nest_lists(config: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_lists`: ``"ks.0"``, ``"ks.1"`` become ``"ks": [...]``.

    Example:
        >>> nest_lists({"ks.1": 7, "ks.0": 3, "r": 224})
        {'ks': [3, 7], 'r': 224}
    """
    nested: dict[str, Any] = {}
    for key, value in config.items():
        base, _, index = key.rpartition(".")
        if base and index.isdigit():
            nested.setdefault(base, {})[int(index)] = value
        else:
            nested[key] = value
    return {k: [v[i] for i in sorted(v)] if isinstance(v, dict) else v for k, v in nested.items()}
