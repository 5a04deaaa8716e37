"""Checkpoints: atomic writes, safe loads, clear errors.

A checkpoint is a dict of tensors and plain Python values saved with ``torch.save`` and
loaded with ``torch.load(weights_only=True)``, so loading never runs code. It is
written to a temporary file in the same folder, flushed to disk, then renamed over the
old one: a process killed at any moment leaves either the old or the new checkpoint,
never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from onefit.errors import UserError
from onefit.rundir import RunDir
from onefit.supernets import Supernet, rebuild_supernet

FORMAT = "onefit-checkpoint"
VERSION = 1


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or belongs to another supernet or space."""


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    supernet: str | None = None,
    space: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and check what it belongs to.

    ``supernet`` and ``space`` (a ``SearchSpace.to_dict()``), when given, must match the
    checkpoint's; otherwise :class:`CheckpointError` says what differs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: not a readable onefit checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a onefit checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('version')}, this onefit reads {VERSION}"
        )
    saved_net = state.get("supernet", {})
    if supernet is not None and saved_net.get("name") != supernet:
        raise CheckpointError(
            f"{path}: checkpoint is for supernet {saved_net.get('name')!r}, not {supernet!r}"
        )
    if space is not None and saved_net.get("space") != dict(space):
        saved = saved_net.get("space") or {}
        differ = sorted(k for k in set(saved) | set(space) if saved.get(k) != space.get(k))
        raise CheckpointError(
            f"{path}: checkpoint's search space differs from this supernet's "
            f"(dimensions {differ[:5]}{' ...' if len(differ) > 5 else ''}); "
            f"build the supernet with the arguments it was trained with"
        )
    return state


def load_supernet(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    supernet: Supernet | None = None,
) -> Supernet:
    """The trained supernet of a run directory or checkpoint file, in eval mode.

    Rebuilds the family with the arguments it was trained with (a registered family, a
    converted torchvision model, or your model's import path: see
    ``onefit.elasticize("package.module:function", ...)``) and loads the weights
    strictly (a mismatch is a :class:`CheckpointError`, never a partial load). A run
    trained on a supernet instance that has no such recipe needs that supernet again,
    freshly built, as ``supernet``; its weights are replaced by the checkpoint's.

    Example:
        >>> import onefit, tempfile
        >>> run = tempfile.mkdtemp()
        >>> _ = onefit.train(epochs=1, run_dir=run, progress=False, strategy="sorted",
        ...                  supernet_kwargs={"depths": [1], "kernel_sizes": [3],
        ...                                   "expand_ratios": [3], "width_mult": 0.5})
        >>> net = load_supernet(run)
        >>> net.spec["name"], net.training
        ('mobilenetv3', False)
    """
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).checkpoint
    state = load_checkpoint(path, map_location=map_location)
    saved = state.get("supernet") or {}
    if supernet is None and saved.get("rebuildable") is False:
        raise CheckpointError(
            f"{path}: this run trained a supernet passed in as an object, which onefit "
            "cannot rebuild by itself; pass the same supernet freshly built "
            "(load_supernet(run, supernet=net), search_run(..., supernet=net), "
            "export(..., supernet=net)), or build it with "
            "onefit.elasticize('package.module:function', example) so the run records how"
        )
    try:
        net = rebuild_supernet(saved) if supernet is None else supernet
        if supernet is not None and net.space.to_dict() != saved.get("space"):
            raise UserError("the supernet passed in has another search space than the run's")
        net.load_state_dict(state["model"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, ImportError) as error:
        raise CheckpointError(f"{path}: cannot rebuild its supernet ({error})") from None
    return net.to(map_location).eval()
