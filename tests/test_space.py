from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onefit.errors import UnknownKeyError, UserError, UserTypeError
from onefit.space import ArchConfig, Dimension, SearchSpace, flatten_lists, nest_lists

OFA_LIKE = {"ks.0": [3, 5, 7], "e.0": [3, 4, 6], "d.0": [2, 3, 4], "r": [128, 160, 192, 224]}


def test_size_enumeration_and_extremes() -> None:
    space = SearchSpace(OFA_LIKE)
    configs = list(space)
    assert space.size == 3 * 3 * 3 * 4 == len(configs) == len(set(configs))
    assert space.smallest() == {"ks.0": 3, "e.0": 3, "d.0": 2, "r": 128}
    assert space.largest() == {"ks.0": 7, "e.0": 6, "d.0": 4, "r": 224}
    assert configs[0] == space.smallest() and configs[-1] == space.largest()


def test_numeric_choices_are_sorted_and_strings_keep_their_order() -> None:
    space = SearchSpace({"op": ["conv3", "skip", "conv5"], "w": [1.0, 0.5, 0.75]})
    assert space["op"].choices == ("conv3", "skip", "conv5")
    assert space["w"].choices == (0.5, 0.75, 1.0)
    assert space.largest() == {"op": "conv5", "w": 1.0}


def test_huge_space_size_is_exact() -> None:
    space = SearchSpace({f"x{i}": [0, 1, 2] for i in range(45)})
    assert space.size == 3**45


def test_seeded_sampling_is_reproducible_and_covers_choices() -> None:
    space = SearchSpace(OFA_LIKE)
    a = space.sample_many(200, seed=7)
    assert a == space.sample_many(200, seed=7)
    assert a != space.sample_many(200, seed=8)
    for dim in space.dimensions:
        assert {c[dim.name] for c in a} == set(dim.choices)


def test_validate_returns_canonical_config() -> None:
    space = SearchSpace(OFA_LIKE)
    cfg = space.validate({"r": np.int64(160), "d.0": 3.0, "e.0": 4, "ks.0": 5})
    assert cfg == {"ks.0": 5, "e.0": 4, "d.0": 3, "r": 160}
    assert type(cfg["r"]) is int and type(cfg["d.0"]) is int
    assert cfg.to_json() == '{"d.0":3,"e.0":4,"ks.0":5,"r":160}'


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"ks.0": 4, "e.0": 3, "d.0": 2, "r": 128},
            r"'ks.0': 4 is not allowed; allowed values: \[3, 5, 7\]",
        ),
        ({"ks.0": 3, "e.0": 3, "d.0": 2}, r"missing dimension\(s\) \['r'\]"),
        ({"ks.0": 3, "e.0": 3, "d.0": 2, "r": 128, "x": 1}, r"unknown dimension\(s\) \['x'\]"),
        ({"ks.0": True, "e.0": 3, "d.0": 2, "r": 128}, r"'ks.0': True is not allowed"),
        ({"ks.0": "3", "e.0": 3, "d.0": 2, "r": 128}, r"'ks.0': '3' is not allowed"),
    ],
)
def test_validate_names_the_problem(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace(OFA_LIKE).validate(config)


def test_validate_rejects_unhashable_values_clearly() -> None:
    with pytest.raises(ValueError, match=r"'ks.0': \[3\] is not allowed"):
        SearchSpace(OFA_LIKE).validate({"ks.0": [3], "e.0": 3, "d.0": 2, "r": 128})


def test_encode_and_decode_shape_errors() -> None:
    space = SearchSpace(OFA_LIKE)
    with pytest.raises(TypeError, match="wrap a single config in a list"):
        space.encode(space.largest())
    with pytest.raises(ValueError, match="2-D array"):
        space.decode(np.zeros((1, 2, 3)), "ordinal")


def test_validate_rejects_non_mappings() -> None:
    with pytest.raises(TypeError, match="mapping"):
        SearchSpace(OFA_LIKE).validate([3, 3, 2, 128])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ({}, "at least one dimension"),
        ({"a": []}, "has no choices"),
        ({"a": [1, 1]}, "lists a choice twice"),
        ({"a": [[1]]}, "must be int, float, str or bool"),
        ({"a": [1, 1.0]}, "lists a choice twice"),
        ({"a": [True, 1]}, "mixes kinds of choice"),
        ({"a": [1, "1"]}, "mixes kinds of choice"),
        ({"a": {1, 2}}, "given in an order"),
        ({"a": [float("inf")]}, "not finite"),
        ({"a": 5}, "choices must be a list of values"),
        ({"a": "abc"}, "choices must be a list of values"),
        ({"a": [float("nan")]}, "must be int, float, str or bool"),
    ],
)
def test_bad_space_definitions(dims: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace(dims)


def test_duplicate_dimension_names() -> None:
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        SearchSpace([Dimension("a", [1]), Dimension("a", [2])])


def test_config_is_hashable_json_round_trips_and_ignores_key_order() -> None:
    a = ArchConfig({"b": 2, "a": "x", "c": 0.5, "d": True})
    b = ArchConfig({"d": True, "c": 0.5, "a": "x", "b": 2})
    assert a == b and hash(a) == hash(b) and a.to_json() == b.to_json()
    assert ArchConfig.from_json(a.to_json()) == a
    assert {a: 1}[b] == 1
    assert json.loads(a.to_json()) == {"a": "x", "b": 2, "c": 0.5, "d": True}
    assert a.replace(b=3)["b"] == 3 and a["b"] == 2


def test_config_rejects_non_scalar_values() -> None:
    with pytest.raises(TypeError, match="must be an int, float, str or bool"):
        ArchConfig({"a": [1, 2]})
    with pytest.raises(ValueError, match="must be an object"):
        ArchConfig.from_json("[1, 2]")


def test_space_json_round_trip() -> None:
    space = SearchSpace({"op": ["conv3", "skip"], "k": [5, 3]})
    assert SearchSpace.from_json(space.to_json()) == space


def test_encodings_by_hand() -> None:
    space = SearchSpace({"op": ["conv3", "skip"], "depth": [1, 2, 3]})
    cfgs = [{"op": "skip", "depth": 1}, {"op": "conv3", "depth": 3}]
    assert space.encode(cfgs, "onehot").tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]]
    assert space.encode(cfgs, "ordinal").tolist() == [[1, 0], [0, 2]]
    with pytest.raises(ValueError, match="unknown encoding 'binary'"):
        space.encode(cfgs, "binary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one-hot vectors have 5 columns, got 4"):
        space.decode(np.zeros((1, 4)), "onehot")


@st.composite
def spaces_and_indices(draw: st.DrawFn) -> tuple[SearchSpace, list[list[int]]]:
    n_dims = draw(st.integers(1, 8))
    dims = {}
    for i in range(n_dims):
        values = draw(
            st.one_of(
                st.lists(st.integers(-50, 50), min_size=1, max_size=5, unique=True),
                st.lists(
                    st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=5, unique=True
                ),
            )
        )
        dims[f"dim.{i}"] = values
    space = SearchSpace(dims)
    rows = draw(
        st.lists(
            st.tuples(*(st.integers(0, len(d) - 1) for d in space.dimensions)).map(list),
            min_size=1,
            max_size=6,
        )
    )
    return space, rows


@settings(max_examples=60, deadline=None)
@given(spaces_and_indices())
def test_encode_decode_round_trip(case: tuple[SearchSpace, list[list[int]]]) -> None:
    space, rows = case
    configs = [space.from_indices(r) for r in rows]
    for kind in ("onehot", "ordinal"):
        encoded = space.encode(configs, kind)
        assert encoded.shape == (
            len(configs),
            space.onehot_width if kind == "onehot" else len(rows[0]),
        )
        assert space.decode(encoded, kind) == configs
    assert space.encode(configs, "onehot").sum(axis=1).tolist() == [len(space.dimensions)] * len(
        rows
    )
    assert [space.to_indices(c) for c in configs] == rows


def test_flatten_and_nest_lists() -> None:
    ofa = {"ks": [3, 5, 7], "e": [4, 6, 3], "d": [2, 4], "r": 224}
    flat = flatten_lists(ofa)
    assert flat == {
        "ks.0": 3,
        "ks.1": 5,
        "ks.2": 7,
        "e.0": 4,
        "e.1": 6,
        "e.2": 3,
        "d.0": 2,
        "d.1": 4,
        "r": 224,
    }
    assert nest_lists(flat) == ofa


# -- issue 14: bad spaces and configs give a clear UserError --------------------------------


@pytest.mark.parametrize("dims", [None, 5, "abc", [1, 2], object()])
def test_space_from_a_non_mapping_is_a_user_type_error(dims: object) -> None:
    with pytest.raises(UserTypeError, match="a search space is built from a mapping"):
        SearchSpace(dims)  # type: ignore[arg-type]


@pytest.mark.parametrize("choices", [{1, 2, 3}, frozenset({"a", "b"})])
def test_a_set_of_choices_is_refused_with_the_reason(choices: object) -> None:
    with pytest.raises(UserTypeError, match="hash seed") as error:
        SearchSpace({"k": choices})  # type: ignore[dict-item]
    assert "'k'" in str(error.value)


def test_ordered_containers_are_accepted() -> None:
    space = SearchSpace({"a": range(3), "b": (5, 3), "c": np.array([2, 1]), "d": {"x": 0}.keys()})
    assert space.to_dict() == {"a": [0, 1, 2], "b": [3, 5], "c": [1, 2], "d": ["x"]}


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ([1.0, float("nan")], "not finite"),
        ([float("-inf"), 2], "not finite"),
        ([True, 0], "mixes kinds"),
        (["a", 1.5], "mixes kinds"),
        ([(1, 2), (3, 4)], "flatten_lists"),
        ([None], "NoneType"),
        (["\ud800"], "lone surrogate"),
        ([0.0, -0.0], "twice"),
    ],
)
def test_bad_choices_name_the_dimension(choices: list, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        SearchSpace({"dim.x": choices})
    assert "dim.x" in str(error.value)


def test_kinds_and_mixed_numbers() -> None:
    space = SearchSpace({"i": [3, 1], "n": [0.5, 2], "s": ["b", "a"], "b": [True, False]})
    assert [d.kind for d in space.dimensions] == ["int", "number", "str", "bool"]
    assert space["n"].choices == (0.5, 2) and space["s"].choices == ("b", "a")
    assert space.validate({"i": 3.0, "n": 2.0, "s": "a", "b": False})["i"] == 3
    with pytest.raises(UserError, match=r"dimension 'b': 1 is not allowed"):
        space.validate({"i": 3, "n": 2, "s": "a", "b": 1})
    with pytest.raises(UserError, match=r"dimension 'i': True is not allowed"):
        space.validate({"i": True, "n": 2, "s": "a", "b": False})


def test_many_choices_build_and_validate_quickly() -> None:
    # The duplicate check is one pass with a dict (it was quadratic: 16,000 choices took
    # 14 s); 50,000 distinct choices and one duplicate among them are both handled.
    values = list(range(50_000))
    space = SearchSpace({"x": values[::-1], "s": [str(v) for v in values]})
    assert space["x"].choices[0] == 0 and len(space["s"]) == 50_000
    assert space.to_indices({"x": 49_999, "s": "7"}) == [49_999, 7]
    with pytest.raises(UserError, match=r"twice \(123\)") as error:
        SearchSpace({"x": [*values, 123]})
    assert "50001 in all" in str(error.value)  # the message is abbreviated
    with pytest.raises(UserError, match=r"50000 in all"):
        space.validate({"x": -1, "s": "1"})


def test_config_json_is_standard_json() -> None:
    with pytest.raises(UserError, match="NaN"):
        ArchConfig.from_json('{"a": NaN}')
    with pytest.raises(UserError, match="Infinity"):
        SearchSpace.from_json('{"a": [1, Infinity]}')
    with pytest.raises(UserError, match="not valid JSON"):
        ArchConfig.from_json('{"a": 1')
    with pytest.raises(UserTypeError, match="JSON text"):
        ArchConfig.from_json(None)  # type: ignore[arg-type]
    with pytest.raises(UserTypeError, match="not finite"):
        ArchConfig({"a": float("nan")})
    space = SearchSpace({"a": [0.1, 1e-300, 2.5e300], "s": ["é", "<x>"]})
    assert SearchSpace.from_json(space.to_json()) == space
    for config in space:
        assert space.validate(ArchConfig.from_json(config.to_json())) == config


def test_config_not_in_the_space_names_the_dimension_and_value() -> None:
    space = SearchSpace({"ks.0": [3, 5, 7], "r": [128, 160]})
    with pytest.raises(UserError, match=r"dimension 'ks.0': 4 is not allowed.*\[3, 5, 7\]"):
        space.validate(ArchConfig.from_json('{"ks.0": 4, "r": 128}'))
    with pytest.raises(UserError, match=r"unknown dimension\(s\) \['zz'\]"):
        space.validate({"ks.0": 3, "r": 128, "zz": 1})
    with pytest.raises(UserError, match=r"missing dimension\(s\) \['r'\]"):
        space.validate({"ks.0": 3})


def test_an_unknown_dimension_is_a_user_error_and_still_a_key_error() -> None:
    space = SearchSpace({"ks": [3, 5], "d": [2, 3]})
    with pytest.raises(UnknownKeyError) as error:
        space["kernel"]
    # A UserError (one line, exit 2 on the command line) and a KeyError (mapping code).
    assert isinstance(error.value, UserError) and isinstance(error.value, KeyError)
    # Shown as written, not quoted the way a plain KeyError is.
    assert str(error.value) == "no dimension 'kernel'; dimensions: ['ks', 'd']"
    assert space["ks"].choices == (3, 5)
