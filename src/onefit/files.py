"""Writing files atomically (documents, checkpoints, exports) and reading state dicts
safely. Reading onefit's sealed JSON documents is :mod:`onefit.digest`.

Example:
    >>> import json, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "doc.json")
    >>> write_json_atomic(path, {"format": "demo/1", "x": 1})
    >>> json.loads(open(path).read())["x"]
    1
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from onefit.errors import UserError


def replace_atomically(path: str | Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to ``path`` so that readers (and a crash) see the old file or
    the new one, never part of one.

    The bytes go to a uniquely named temporary file in the same folder
    (:func:`tempfile.mkstemp`: two writers never share one), which is flushed and
    fsynced, then renamed over ``path``; the folder is fsynced so the rename itself
    survives a power cut. On any failure the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | Path) -> None:
    """Make renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = None) -> None:
    """Write ``data`` as standard JSON (no NaN/Infinity) through a unique temporary file,
    fsync and a rename: never half a file (see :func:`replace_atomically`)."""
    try:
        text = json.dumps(data, indent=indent, allow_nan=False) + "\n"
    except ValueError as error:  # NaN or infinity: not JSON
        raise UserError(f"{path}: cannot write {error} as standard JSON") from None
    replace_atomically(path, [text.encode("utf-8")])


def read_state_dict(path: str | Path, what: str) -> dict[str, Any]:
    """A state dict saved with ``torch.save(module.state_dict(), path)``, read safely.

    Only tensors and plain containers are accepted (``weights_only=True``); a missing
    file or anything else raises ``ValueError`` naming ``what`` the file was for. A
    ``{"state_dict": ...}`` wrapper (common in checkpoints) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what}: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors of many kinds: one clear message
        raise UserError(
            f"{what}: cannot read {path} as a state dict ({type(error).__name__}); save it "
            "with torch.save(module.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{what}: {path} holds a {type(state).__name__}, not a state dict")
    return state
