"""The exceptions every onefit error derives from, and what each kind means for a caller.

Two kinds of failure, told apart by their base class:

* :class:`UserError` -- the input is wrong and the user can fix it: a bad setting, an
  unknown name, a missing or damaged file, an optional package that is not installed.
  It is also a :class:`ValueError`, so ``except ValueError`` keeps catching it. The
  message says what was received, what is allowed and how to fix it. The command line
  prints it as one line and exits with status 2.
* any other :class:`OnefitError` -- the input was fine but the work failed (training
  diverged, an export does not reproduce its supernet). The command line prints a short
  message, writes the traceback to a log file and exits with status 1.

Bad arguments raise :class:`UserError` (:class:`UserTypeError` for a wrong type,
:class:`MissingDependencyError` for an optional package that is not installed),
never a plain ``ValueError``/``TypeError``: on the command line anything that is not a
``UserError`` is an internal error, so a plain one escaping from deep inside (a torch or
library error) is reported as a bug, with its traceback in the log.
This module is a leaf: it imports nothing from onefit, so any module may import it.

Example:
    >>> try:
    ...     raise UnknownNameError("unknown widget 'x'; known: box")
    ... except ValueError as error:  # a user error is a ValueError
    ...     isinstance(error, OnefitError), str(error)
    (True, "unknown widget 'x'; known: box")
"""

from __future__ import annotations


class OnefitError(Exception):
    """The base of every exception onefit raises on purpose; ``except OnefitError`` catches all."""


class UserError(OnefitError, ValueError):
    """Bad input the user can fix (exit status 2 on the command line); a ``ValueError``."""


class UserTypeError(UserError, TypeError):
    """A value of the wrong type (a string where a number belongs); also a ``TypeError``."""


class MissingDependencyError(UserError, ImportError):
    """An optional package is not installed; the message names what to ``pip install``."""


class UnknownNameError(UserError):
    """A name that no registry entry has; the message lists the registered names."""


class UnknownKeyError(UnknownNameError, KeyError):
    """A key that a mapping-like onefit object (a search space's dimensions) does not have.

    Also a ``KeyError``, so ``mapping.get`` and ``except KeyError`` work as usual; unlike
    a plain ``KeyError`` its message is shown as written, not quoted.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(UserError):
    """A second registration under a name that is already taken."""


class Interrupted(OnefitError):
    """A run stopped on request (Ctrl-C, SIGTERM) after saving its state.

    Not a failure: running the same command again continues. The command line prints
    the message and exits with status 130, as a shell does for Ctrl-C.
    """


__all__ = [
    "DuplicateNameError",
    "Interrupted",
    "MissingDependencyError",
    "OnefitError",
    "UnknownKeyError",
    "UnknownNameError",
    "UserError",
    "UserTypeError",
]
