"""Checkpoints: atomic writes, safe loads, a content hash, clear errors.

A checkpoint is a dict of tensors and plain Python values saved with ``torch.save`` and
loaded with ``torch.load(weights_only=True)``, so loading never runs code. The file is
the ``torch.save`` bytes followed by one fixed-length trailer line holding their
SHA-256 (:data:`TRAILER_PREFIX`); :func:`load_checkpoint` recomputes it before
unpickling anything, so a flipped, truncated or edited byte anywhere in the file is a
:class:`CheckpointError` naming the file, never weights silently changed. (Zip readers,
``torch.load`` among them, ignore the trailer: the file stays a plain torch file.)

It is written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a process killed at any moment leaves either the old or the new
checkpoint, never a torn one. The hash is inside the file, so the rename replaces
weights and hash together.

Example:
    >>> import tempfile, torch
    >>> path = save_checkpoint({"model": {"w": torch.ones(2)}}, tempfile.mkdtemp() + "/c.pt")
    >>> load_checkpoint(path)["model"]["w"].tolist()
    [1.0, 1.0]
    >>> data = bytearray(path.read_bytes()); data[100] ^= 1; _ = path.write_bytes(data)
    >>> load_checkpoint(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    onefit.training.checkpoint.CheckpointError: ...c.pt: content hash mismatch: damaged ...
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onefit.errors import UserError
from onefit.files import replace_atomically
from onefit.rundir import RunDir
from onefit.supernets import INIT_ONLY_KWARGS, Supernet, rebuild_supernet

FORMAT = "onefit-checkpoint"
# 2: the file ends with a SHA-256 trailer of its torch.save bytes.
VERSION = 2
TRAILER_PREFIX = b"\nonefit-sha256:"
TRAILER_LENGTH = len(TRAILER_PREFIX) + 64 + 1  # prefix, hex digest, newline
_TRAILER = re.compile(rb"\nonefit-sha256:([0-9a-f]{64})\n\Z")

#: What every checkpoint holds (key -> the types its value may have).
CORE_KEYS: dict[str, tuple[type, ...]] = {"model": (dict,)}
#: What a checkpoint of a trained supernet holds (load_supernet reads these).
SUPERNET_KEYS: dict[str, tuple[type, ...]] = {"supernet": (dict,), **CORE_KEYS}
#: What a training checkpoint holds besides, to resume exactly.
RESUME_KEYS: dict[str, tuple[type, ...]] = {
    **SUPERNET_KEYS,
    "optimizer": (dict,),
    "scheduler": (dict,),
    "scaler": (dict,),
    "strategy": (dict,),
    "teacher": (dict, type(None)),
    "rng": (dict,),
    "step": (int,),
    "history": (list,),
    "epoch_losses": (list,),
}


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or belongs to another supernet or space."""


def _trailer(body: bytes) -> bytes:
    return TRAILER_PREFIX + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n"


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename), with the
    SHA-256 trailer :func:`load_checkpoint` verifies."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    body = buffer.getvalue()
    replace_atomically(path, [body, _trailer(body)])
    return path


def is_checkpoint_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` ends with a checkpoint's hash trailer (says nothing of its content)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            if file.tell() < TRAILER_LENGTH:
                return False
            file.seek(-TRAILER_LENGTH, os.SEEK_END)
            return _TRAILER.match(file.read()) is not None
    except OSError:
        return False


def _read_verified(path: Path) -> bytes:
    """The torch.save bytes of the checkpoint at ``path``, their hash checked."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({error})") from None
    match = _TRAILER.search(data[-TRAILER_LENGTH:]) if len(data) >= TRAILER_LENGTH else None
    if match is None:
        raise CheckpointError(
            f"{path}: not a readable onefit checkpoint (no content hash trailer at its end: "
            "the file is truncated or damaged, not a onefit checkpoint, or was written by an "
            f"onefit older than checkpoint format {VERSION}; train again to write a new one)"
        )
    body = data[:-TRAILER_LENGTH]
    if hashlib.sha256(body).hexdigest() != match.group(1).decode("ascii"):
        raise CheckpointError(
            f"{path}: content hash mismatch: damaged or modified since onefit wrote it "
            "(refusing to load weights that are not the ones saved)"
        )
    return body


def _check_structure(path: Path, state: Any, required: Mapping[str, tuple[type, ...]]) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a onefit checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('version')!r}, this onefit reads "
            f"{VERSION}"
        )
    for key, kinds in required.items():
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry (damaged or foreign)")
        value = state[key]
        if not isinstance(value, kinds) or (int in kinds and isinstance(value, bool)):
            allowed = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            raise CheckpointError(
                f"{path}: checkpoint entry {key!r} is a {type(value).__name__}, {allowed} "
                "expected (damaged or foreign)"
            )
    if "model" in required and not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()
    ):
        raise CheckpointError(
            f"{path}: checkpoint entry 'model' is not a state dict (name -> tensor)"
        )
    if "supernet" in required:
        net = state["supernet"]
        for key, kinds in (("name", (str,)), ("kwargs", (dict,)), ("space", (dict,))):
            if key in net and not isinstance(net[key], kinds):
                raise CheckpointError(
                    f"{path}: checkpoint entry 'supernet.{key}' is a {type(net[key]).__name__}"
                )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _plain(value: Any) -> Any:
    """Tuples as lists (JSON's view), so recorded and given arguments compare as written."""
    return json.loads(json.dumps(value, default=repr), parse_constant=float)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    supernet: str | None = None,
    space: Mapping[str, Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
    required: Mapping[str, tuple[type, ...]] = CORE_KEYS,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and check what it belongs to.

    The content hash is verified first; then the entries in ``required`` (key -> allowed
    types, default :data:`CORE_KEYS`; :data:`RESUME_KEYS` for resuming training) must be
    there. ``supernet`` (family name), ``space`` (a ``SearchSpace.to_dict()``) and
    ``kwargs`` (constructor arguments), when given, must match the checkpoint's;
    otherwise :class:`CheckpointError` names what differs, the recorded value and this one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    body = _read_verified(path)
    try:
        state = torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: not a readable onefit checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'})"
        ) from None
    _check_structure(path, state, required)
    saved_net = state.get("supernet", {}) if isinstance(state.get("supernet"), dict) else {}
    if supernet is not None and saved_net.get("name") != supernet:
        raise CheckpointError(
            f"{path}: checkpoint is for supernet {saved_net.get('name')!r}, not {supernet!r}"
        )
    if kwargs is not None:
        differ = _differences(saved_net.get("kwargs", {}), kwargs, "this supernet")
        if differ:
            raise CheckpointError(
                f"{path}: checkpoint's supernet {saved_net.get('name')!r} was built with other "
                f"arguments ({differ}); build the supernet with the arguments it was trained "
                "with, or train in a new run directory"
            )
    if space is not None and saved_net.get("space") != dict(space):
        saved = saved_net.get("space") or {}
        dims = sorted(k for k in set(saved) | set(space) if saved.get(k) != space.get(k))
        raise CheckpointError(
            f"{path}: checkpoint's search space differs from this supernet's "
            f"(dimensions {dims[:5]}{' ...' if len(dims) > 5 else ''}); "
            f"build the supernet with the arguments it was trained with"
        )
    return state


def load_weights(
    net: nn.Module, weights: Mapping[str, Any], path: str | os.PathLike[str], what: str = ""
) -> None:
    """``net.load_state_dict(weights, strict=True)``, with a one-line
    :class:`CheckpointError` naming ``path`` and the first missing, unexpected or
    differently shaped entries instead of torch's multi-line RuntimeError."""
    own = net.state_dict()
    where = f"{what}: {path}" if what else str(path)
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in weights
        and isinstance(weights[k], torch.Tensor)
        and tuple(weights[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = " ..." if len(items) > 3 else ""
            problems.append(f"{len(items)} {label} ({', '.join(items[:3])}{more})")
    if problems:
        raise CheckpointError(
            f"{where} does not fit this supernet: {'; '.join(problems)} (saved vs built); "
            "build the supernet with the arguments the weights were trained with"
        )
    try:
        net.load_state_dict(weights, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{where} does not fit this supernet: {first}") from None


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
    state = load_checkpoint(path, map_location=map_location, required=SUPERNET_KEYS)
    saved = state["supernet"]
    if supernet is None and saved.get("rebuildable") is False:
        raise CheckpointError(
            f"{path}: this run trained a supernet passed in as an object, which onefit "
            "cannot rebuild by itself; pass the same supernet freshly built "
            "(load_supernet(run, supernet=net), search_run(..., supernet=net), "
            "export(..., supernet=net)), or build it with "
            "onefit.elasticize('package.module:function', example) so the run records how"
        )
    if not isinstance(saved.get("name"), str) or not isinstance(saved.get("kwargs"), dict):
        raise CheckpointError(f"{path}: checkpoint entry 'supernet' has no 'name' and 'kwargs'")
    if supernet is not None:
        spec = supernet.spec
        if spec is not None and saved.get("rebuildable") is not False:
            _compare_spec(path, saved, spec)
        if supernet.space.to_dict() != saved.get("space"):
            raise CheckpointError(
                f"{path}: the supernet passed in has another search space than the run's"
            )
        net = supernet
    else:
        try:
            net = rebuild_supernet(saved)
        except Exception as error:  # the file says how to build it: any failure is the file's
            raise CheckpointError(f"{path}: cannot rebuild its supernet ({error})") from None
        if isinstance(saved.get("space"), dict) and net.space.to_dict() != saved["space"]:
            # A converted model whose conversion rules changed since: same weights, other
            # dimensions. Loading would silently pair the weights with untrained choices.
            rebuilt, recorded = net.space.to_dict(), saved["space"]
            dims = sorted(
                k for k in set(rebuilt) | set(recorded) if rebuilt.get(k) != recorded.get(k)
            )
            raise CheckpointError(
                f"{path}: its supernet rebuilds with another search space than the run "
                f"recorded (dimensions {', '.join(dims[:5])}{', ...' if len(dims) > 5 else ''}"
                "): made by another onefit version? Convert the model again and retrain"
            )
    load_weights(net, state["model"], path)
    return net.to(map_location).eval()


def _differences(recorded: Any, given: Mapping[str, Any], label: str) -> str:
    """The constructor arguments that differ, "key: checkpoint X, <label> Y; ...", or ""."""
    saved = _plain(dict(recorded)) if isinstance(recorded, Mapping) else {}
    other = _plain(dict(given))
    unset = object()

    def same(key: str) -> bool:  # by value, as JSON writes them: 1 == 1.0, but not true
        a, b = saved.get(key, unset), other.get(key, unset)
        return a is not unset and b is not unset and _json(_by_value(a)) == _json(_by_value(b))

    differ = sorted(k for k in set(saved) | set(other) if k not in INIT_ONLY_KWARGS and not same(k))
    shown = "; ".join(
        f"{k}: checkpoint {saved.get(k, '(unset)')!r}, {label} {other.get(k, '(unset)')!r}"
        for k in differ[:4]
    )
    return shown + (" ..." if len(differ) > 4 else "")


def _by_value(value: Any) -> Any:
    """``value`` with every number a float (bools kept apart), so that ``width_mult=1`` in
    a TOML file and ``1.0`` on the command line, which build the same network, compare
    equal."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _by_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_by_value(v) for v in value]
    return value


def _compare_spec(path: Path, saved: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """A CheckpointError unless ``spec`` (a supernet's) names the recorded family and arguments."""
    if spec.get("name") != saved.get("name"):
        raise CheckpointError(
            f"{path}: checkpoint is for supernet {saved.get('name')!r}, the supernet passed "
            f"in is {spec.get('name')!r}"
        )
    differ = _differences(saved.get("kwargs") or {}, spec.get("kwargs") or {}, "passed in")
    if differ:
        raise CheckpointError(
            f"{path}: the supernet passed in was built with other arguments than the run's "
            f"({differ})"
        )
