"""Reading and writing onefit's JSON documents (latency tables, predictors).

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "doc.json")
    >>> write_json_atomic(path, {"format": "demo/1", "x": 1})
    >>> read_json_document(path, "demo/1", "demo file", ValueError)["x"]
    1
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from onefit.errors import UserError


def read_json_document(
    path: str | Path, format: str, what: str, error: type[Exception]
) -> dict[str, Any]:
    """The JSON object in ``path`` marked ``"format": format``.

    A missing file, text that is not JSON, or another format raises ``error`` with a
    message naming the file and ``what`` it should have been.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"no {what} at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path} is not a {what} (JSON expected): {problem}") from None
    if not isinstance(data, dict) or data.get("format") != format:
        raise error(f"{path} is not a {what} (format {format!r} expected)")
    return data


def write_json_atomic(path: str | Path, data: Any, indent: int | None = None) -> None:
    """Write ``data`` as JSON through a temporary file and a rename: never half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent) + "\n")
    tmp.replace(path)


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
