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
