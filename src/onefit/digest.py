"""Content hashes of onefit's JSON documents (latency tables, predictors).

A document is *sealed* by adding ``"sha256"``: the hash of its canonical JSON (sorted
keys, no spaces, standard JSON only) without that field. Reading it back recomputes the
hash, so a file changed after it was written (a flipped byte, an edit) is told apart
from the one onefit saved. This detects damage, not forgery: anyone can recompute it.

Example:
    >>> doc = seal({"format": "demo/2", "x": 1})
    >>> verify_seal(doc, "doc.json", ValueError)
    >>> doc["x"] = 2
    >>> verify_seal(doc, "doc.json", ValueError)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: doc.json: content does not match its sha256 ...
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FIELD = "sha256"


def content_sha256(data: dict[str, Any]) -> str:
    """The sha256 (hex) of ``data``'s canonical JSON, its ``sha256`` field left out."""
    body = {k: v for k, v in data.items() if k != FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with its ``sha256`` field set."""
    return {**data, FIELD: content_sha256(data)}


def verify_seal(data: dict[str, Any], path: str | Path, error: type[Exception]) -> None:
    """Raise ``error`` naming ``path`` unless ``data`` carries the sha256 of its content."""
    recorded = data.get(FIELD)
    if not isinstance(recorded, str):
        raise error(f"{path}: no {FIELD} of its content (a file onefit wrote has one)")
    try:
        actual = content_sha256(data)
    except (TypeError, ValueError) as problem:  # NaN/inf or non-JSON values
        raise error(f"{path}: content is not standard JSON ({problem})") from None
    if actual != recorded:
        raise error(
            f"{path}: content does not match its sha256 (recorded {recorded[:16]}..., "
            f"computed {actual[:16]}...): the file was changed or damaged after it was written"
        )


def read_document(
    path: str | Path, formats: tuple[str, ...], what: str, error: type[Exception]
) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``"format"`` is one of ``formats``; the newest
    format (the first) must carry a matching sha256 (:func:`verify_seal`).

    A missing file, bytes that are not UTF-8 JSON (a pickle, say: it is never
    unpickled), NaN/inf, another format or a changed content raise ``error`` naming
    the file and ``what`` it should have been.
    """
    path = Path(path)
    data = read_json(path, what, error)
    if not isinstance(data, dict):
        raise error(f"{path} is not a {what} (a JSON object expected)")
    found = data.get("format")
    if found not in formats:
        raise error(
            f"{path} is not a {what}: format {str(found)[:80]!r}, expected one of {list(formats)}"
        )
    if found == formats[0]:
        verify_seal(data, path, error)
    return data


def read_json(path: str | Path, what: str, error: type[Exception]) -> Any:
    """The standard JSON (UTF-8, no NaN/Infinity) in the file ``path``; a missing file,
    a folder or bytes that are not such JSON raise ``error`` naming the file and ``what``
    it should have been. Nothing in the file is executed (a pickle is just bad bytes)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, parse_constant=refuse_json_constant)
    except FileNotFoundError:
        raise error(f"no {what} at {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a {what}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as problem:
        raise error(f"{path} is not a {what} (UTF-8 JSON expected): {problem}") from None


def refuse_json_constant(name: str) -> Any:
    """``json.loads(..., parse_constant=refuse_json_constant)``: NaN and Infinity are not
    standard JSON; Python's json module would otherwise read them as floats."""
    raise ValueError(f"{name} is not standard JSON")


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of the bytes of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
