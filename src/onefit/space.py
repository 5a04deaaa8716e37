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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from onefit.errors import UserError, UserTypeError

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

    __slots__ = ("_hash", "_items")

    def __init__(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise UserTypeError(
                f"an ArchConfig is built from a mapping, got {type(values).__name__}"
            )
        items = []
        for key in sorted(values):
            if not isinstance(key, str):
                raise UserTypeError(f"config keys must be strings, got {key!r}")
            value = _plain(values[key])
            if not isinstance(value, (int, float, str, bool)):
                raise UserTypeError(
                    f"config value for {key!r} must be an int, float, str or bool, got {value!r}"
                )
            items.append((key, value))
        self._items: tuple[tuple[str, Choice], ...] = tuple(items)
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> Choice:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

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
        return json.dumps(dict(self._items), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        """Parse a config written by :meth:`to_json` (or any JSON object of scalars)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise UserError(f"a config JSON must be an object, got {type(data).__name__}")
        return cls(data)

    def replace(self, **changes: Any) -> ArchConfig:
        """A copy with some values changed (keys with dots: use ``ArchConfig({**c, k: v})``)."""
        return ArchConfig({**dict(self._items), **changes})


class Dimension:
    """One named categorical dimension.

    Numeric choices are sorted ascending, so index 0 is the smallest and the last the
    largest; other choices (strings, mixed) keep the order given.
    """

    __slots__ = ("_index", "choices", "name")

    def __init__(self, name: str, choices: Iterable[Any]) -> None:
        if not isinstance(name, str) or not name:
            raise UserError(f"a dimension name must be a non-empty string, got {name!r}")
        if isinstance(choices, (str, bytes, Mapping)) or not isinstance(choices, Iterable):
            raise UserError(
                f"dimension {name!r}: choices must be a list of values, got {choices!r}"
            )
        values = [_plain(c) for c in choices]
        if not values:
            raise UserError(f"dimension {name!r} has no choices")
        for value in values:
            if not isinstance(value, (int, float, str, bool)) or value != value:  # NaN
                raise UserError(
                    f"dimension {name!r}: choices must be int, float, str or bool, got {value!r}"
                )
        # Equal under == (1 and 1.0, True and 1) would be one config twice.
        if any(a == b for i, a in enumerate(values) for b in values[i + 1 :]):
            raise UserError(f"dimension {name!r} lists a choice twice: {values}")
        if all(_is_number(v) for v in values):
            values = sorted(values)
        self.name = name
        self.choices: tuple[Choice, ...] = tuple(values)
        self._index = {(type(v), v): i for i, v in enumerate(values)}

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices; ``ValueError`` if it is not one."""
        value = _plain(value)
        try:
            found = self._index.get((type(value), value))
        except TypeError:  # unhashable, e.g. a list
            found = None
        if found is None and _is_number(value):
            # 3 and 3.0 name the same choice; bools are never numbers here.
            for i, choice in enumerate(self.choices):
                if _is_number(choice) and choice == value:
                    return i
        if found is None:
            raise UserError(
                f"dimension {self.name!r}: {value!r} is not allowed; "
                f"allowed values: {list(self.choices)}"
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
        else:
            dims = list(dimensions)
            for dim in dims:
                if not isinstance(dim, Dimension):
                    raise UserTypeError(f"expected Dimension objects, got {dim!r}")
        if not dims:
            raise UserError("a search space needs at least one dimension")
        names = [d.name for d in dims]
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise UserError(f"dimension names must be unique; repeated: {repeated}")
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
            raise KeyError(f"no dimension {name!r}; dimensions: {self.names}") from None

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
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise UserError("a search space JSON must be an object {name: [choices]}")
        return cls(data)

    # -- configs -------------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any]) -> ArchConfig:
        """Check ``config`` against the space and return it in canonical form.

        Raises ``ValueError`` naming the missing or unknown dimension, or the dimension,
        the bad value and the allowed values.
        """
        if not isinstance(config, Mapping):
            raise UserTypeError(
                f"a config is a mapping from dimension name to value, got {type(config).__name__}"
            )
        missing = [n for n in self.names if n not in config]
        if missing:
            raise UserError(f"config is missing dimension(s) {missing}")
        unknown = [k for k in config if k not in self._by_name]
        if unknown:
            raise UserError(f"config has unknown dimension(s) {unknown}; known: {self.names}")
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
