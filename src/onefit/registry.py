"""A small name -> factory registry, shared by every pluggable family in onefit.

Supernets, training strategies, search strategies, predictors, runtimes and exporters
each keep one :class:`Registry`. Registering a name twice is an error (a silent
overwrite would make ``create("x")`` depend on import order), and asking for an
unknown name lists what exists. Both errors are :class:`onefit.errors.UserError`
subclasses (so also ``ValueError``): :class:`~onefit.errors.DuplicateNameError` and
:class:`~onefit.errors.UnknownNameError`.

Each registry's module offers the same three verbs around it, ``register_X``,
``create_X`` and ``list_Xs`` (as timm's ``register_model``/``create_model``/
``list_models``); ``tests/test_registries.py`` checks every registry for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from onefit.errors import DuplicateNameError, UnknownNameError, UserError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Maps names to factories that build a ``T``.

    Example:
        >>> widgets: Registry[object] = Registry("widget")
        >>> @widgets.register("box")
        ... def make_box(size: int = 1) -> dict:
        ...     return {"size": size}
        >>> widgets.create("box", size=3)
        {'size': 3}
        >>> widgets.names()
        ['box']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers ``factory`` under ``name``."""
        if not isinstance(name, str) or not name:
            raise UserError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorator(factory: F) -> F:
            if name in self._factories:
                raise DuplicateNameError(
                    f"a {self.kind} named {name!r} is already registered "
                    f"(by {self._factories[name].__qualname__}); choose another name"
                )
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; an unknown name raises :class:`UnknownNameError`
        listing the known ones."""
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the object registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __len__(self) -> int:
        return len(self._factories)
