"""Every registry in onefit offers the same verbs and fails the same way.

The registries are found by importing every onefit module and collecting the
:class:`onefit.registry.Registry` instances it holds, not from a list kept here: a new
registry is checked the day it is added. Each must have, in the module that defines it,
``register_X`` (a decorator), ``create_X`` and ``list_Xs``; an unknown name raises
:class:`onefit.errors.UnknownNameError` listing the known names; a second registration
under a taken name raises :class:`onefit.errors.DuplicateNameError`; no two registries
share a kind or a constant name. And each registry has a conformance suite that runs
every registered member (:data:`MEMBER_SUITES`), so a new plug-in is tested the day it is
registered.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import onefit
from onefit.errors import DuplicateNameError, UnknownNameError, UserError
from onefit.registry import Registry


@dataclass(frozen=True)
class Found:
    """A registry, the constant naming it and the module whose source defines it."""

    constant: str
    registry: Registry[Any]
    module: ModuleType


def _modules() -> list[ModuleType]:
    modules = []
    for info in pkgutil.walk_packages(onefit.__path__, "onefit."):
        try:
            modules.append(importlib.import_module(info.name))
        except ModuleNotFoundError as error:  # an optional dependency of that module
            if (error.name or "").startswith("onefit"):
                raise
    return modules


def _registries() -> list[Found]:
    """Each registry once, with the module whose source assigns it (re-exports left out)."""
    holders: dict[int, list[tuple[str, Registry[Any], ModuleType]]] = {}
    for module in _modules():
        for name, value in vars(module).items():
            if isinstance(value, Registry):
                holders.setdefault(id(value), []).append((name, value, module))
    found = []
    for entries in holders.values():
        homes = [
            Found(name, registry, module)
            for name, registry, module in entries
            if re.search(rf"^{name}\b[^=\n]*= *Registry\(", inspect.getsource(module), re.M)
        ]
        assert len(homes) == 1, f"registry {entries[0][1].kind!r} defined in {homes}"
        found.extend(homes)
    return sorted(found, key=lambda f: f.constant)


REGISTRIES = _registries()

# Where each registry's members are tested, and the verb that test is parametrized over
# (so the suite runs every registered name, never a list kept in the test).
MEMBER_SUITES = {
    "supernet": ("test_supernets.py", "onefit.list_supernets()"),
    "training strategy": ("test_strategies.py", "TRAINING_STRATEGIES.names()"),
    "search strategy": ("test_search.py", "list_search_strategies()"),
    "runtime": ("test_latency.py", "list_runtimes()"),
    "dataset": ("test_data.py", "DATASETS.names()"),
    "predictor": ("test_predictors.py", "list_predictors()"),
    "zero-cost proxy": ("test_proxies.py", "set(list_proxies())"),
    "task": ("test_tasks.py", "list_tasks()"),
    "augmentation recipe": ("test_loader.py", "list_recipes()"),
}


def _plural(stem: str) -> str:
    return stem[:-1] + "ies" if stem.endswith("y") else stem + "s"


@pytest.fixture(autouse=True)
def _scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a test register into the real registries: each is restored afterwards."""
    for found in REGISTRIES:
        monkeypatch.setattr(found.registry, "_factories", dict(found.registry._factories))


def _verbs(found: Found) -> tuple[Any, Any, Any]:
    """``register_X``, ``create_X`` and ``list_Xs`` of ``found``'s module, for its registry.

    ``register_X`` is told apart from other ``register_*`` names in the module by what
    it does: it is the one that registers into this registry.
    """
    stems = []
    for name in dir(found.module):
        if name.startswith("register_"):
            probe = f"__probe_of_{name}__"
            getattr(found.module, name)(probe)(lambda **kwargs: kwargs)
            if probe in found.registry:
                stems.append(name.removeprefix("register_"))
    assert len(stems) == 1, (
        f"{found.module.__name__} needs one register_X for {found.constant}, has {stems}"
    )
    stem = stems[0]
    missing = [
        verb
        for verb in (f"create_{stem}", f"list_{_plural(stem)}")
        if not callable(getattr(found.module, verb, None))
    ]
    assert not missing, f"{found.module.__name__} lacks {missing} next to register_{stem}"
    return (
        getattr(found.module, f"register_{stem}"),
        getattr(found.module, f"create_{stem}"),
        getattr(found.module, f"list_{_plural(stem)}"),
    )


def test_the_walk_finds_every_family_of_plug_ins() -> None:
    kinds = {found.registry.kind for found in REGISTRIES}
    assert {"supernet", "training strategy", "search strategy", "runtime", "dataset"} <= kinds
    assert len(REGISTRIES) >= 7


@pytest.mark.parametrize("found", REGISTRIES, ids=lambda found: found.constant)
def test_every_registry_has_a_suite_over_all_its_members(found: Found) -> None:
    assert found.registry.kind in MEMBER_SUITES, (
        f"registry {found.registry.kind!r} ({found.constant}) has no member conformance "
        "suite; write one parametrized over its list verb and add it to MEMBER_SUITES"
    )
    module, verb = MEMBER_SUITES[found.registry.kind]
    source = (Path(__file__).parent / module).read_text()
    assert verb in source, f"{module} does not run over {verb}"


def test_no_two_registries_share_a_kind_or_a_constant_name() -> None:
    kinds = [found.registry.kind for found in REGISTRIES]
    constants = [found.constant for found in REGISTRIES]
    assert len(set(kinds)) == len(kinds), kinds
    assert len(set(constants)) == len(constants), constants


@pytest.mark.parametrize("found", REGISTRIES, ids=lambda found: found.constant)
def test_register_create_and_list_are_module_level_verbs(found: Found) -> None:
    names = found.registry.names()
    register, create, list_names = _verbs(found)
    assert list_names() == found.registry.names() and names == sorted(names)
    made = SimpleNamespace()  # create_supernet sets .spec on what it builds

    @register("__probe__")
    def factory(**kwargs: Any) -> object:
        return made

    assert "__probe__" in list_names()
    # A registry of plain functions (the zero-cost proxies) hands back the function.
    assert create("__probe__") in (made, factory)


@pytest.mark.parametrize("found", REGISTRIES, ids=lambda found: found.constant)
def test_an_unknown_name_is_a_user_error_listing_the_known_names(found: Found) -> None:
    create, list_names = _verbs(found)[1:]
    with pytest.raises(UnknownNameError) as caught:
        create("no-such-name")
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert f"unknown {found.registry.kind} 'no-such-name'" in message
    assert f"known: {', '.join(list_names())}" in message


@pytest.mark.parametrize("found", REGISTRIES, ids=lambda found: found.constant)
def test_a_second_registration_under_a_taken_name_is_refused(found: Found) -> None:
    original = found.registry.names()
    register = _verbs(found)[0]
    taken = original[0]
    before = found.registry.get(taken)
    with pytest.raises(DuplicateNameError, match=rf"{found.registry.kind} named '{taken}'"):
        register(taken)(lambda **kwargs: None)
    assert found.registry.get(taken) is before  # the first registration is untouched
