"""Device profiles: where and how a figure was measured.

A latency measured with ONNX Runtime on 2 threads of one CPU says nothing about 4 threads
of another, so every measured figure in onefit carries the :class:`DeviceProfile` it was
measured under, and figures are only combined (in a lookup table, a predictor's training
set, a search) when their profiles match.

Example:
    >>> profile = DeviceProfile.detect(runtime="eager", device="cpu", threads=1, batch_size=1)
    >>> profile.runtime, profile.threads, profile.batch_size
    ('eager', 1, 1)
    >>> DeviceProfile.from_dict(profile.to_dict()) == profile
    True
"""

from __future__ import annotations

import json
import platform
import socket
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from onefit.digest import read_json
from onefit.errors import UserError
from onefit.files import write_json_atomic

# Libraries whose version can change a measured figure.
TRACKED_LIBRARIES = ("torch", "onnxruntime", "onefit")


class ProfileMismatchError(UserError):
    """Figures measured under different device profiles were about to be mixed."""


class ProfileError(UserError):
    """A device profile (a file or an object) is missing fields or has wrong types."""


# The fields of a profile and their types (versions: library -> version, checked apart).
_FIELD_TYPES = {"runtime": str, "device": str, "device_name": str, "threads": int,
                "batch_size": int, "platform": str, "name": str}  # fmt: skip


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return _cpu_name()


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class DeviceProfile:
    """A named record of runtime, device, threads, batch size and library versions.

    Two profiles are *compatible* when every field but ``name`` is equal; ``name`` is a
    label for people (default: host, runtime, device, threads and batch size).
    """

    runtime: str
    device: str
    device_name: str
    threads: int
    batch_size: int
    platform: str
    versions: dict[str, str] = field(default_factory=dict)
    name: str = ""

    @classmethod
    def detect(
        cls,
        *,
        runtime: str,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 1,
        name: str | None = None,
    ) -> DeviceProfile:
        """The profile of this machine for the given settings."""
        threads = torch.get_num_threads() if threads is None else threads
        label = name or f"{socket.gethostname()}-{runtime}-{device}-t{threads}-b{batch_size}"
        return cls(
            runtime=runtime,
            device=device,
            device_name=_device_name(device),
            threads=threads,
            batch_size=batch_size,
            platform=f"{platform.system()}-{platform.machine()}",
            versions=_library_versions(),
            name=label,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> DeviceProfile:
        """The profile in ``data`` (as :meth:`to_dict` writes it), every field checked.

        Raises :class:`ProfileError` listing each missing, unknown or mistyped field.

        Example:
            >>> DeviceProfile.from_dict({"runtime": "eager"})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
                ...
            onefit.metrics.device.ProfileError: bad device profile: device (expected str, ...
        """
        if not isinstance(data, dict):
            raise ProfileError(f"a device profile is an object, got {type(data).__name__}")
        problems = [
            f"{name} (expected {kind.__name__}, got {data.get(name)!r})"
            for name, kind in _FIELD_TYPES.items()
            if name in data or name != "name"  # name is optional
            if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool)
        ]
        problems += [
            f"{name} must be >= 1, got {data[name]}"
            for name in ("threads", "batch_size")
            if type(data.get(name)) is int and data[name] < 1
        ]
        versions = data.get("versions", {})
        if not isinstance(versions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
        ):
            problems.append("versions (expected an object of library -> version)")
        unknown = sorted(map(str, set(data) - set(_FIELD_TYPES) - {"versions"}))
        if unknown:
            problems.append(f"unknown fields {unknown}")
        if problems:
            raise ProfileError(f"bad device profile: {'; '.join(problems)}")
        return cls(**{**data, "versions": dict(versions)})

    def save(self, path: str | Path) -> None:
        """Write the profile as JSON (atomically), for :meth:`load` and
        ``onefit search --target-profile``."""
        write_json_atomic(path, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        """The profile in the JSON file ``path``: one written by :meth:`save`, or a file
        holding one under ``"profile"`` (a latency table). Errors name the file."""
        data = read_json(path, "device profile", ProfileError)
        if isinstance(data, dict) and isinstance(data.get("profile"), dict):
            data = data["profile"]
        try:
            return cls.from_dict(data)
        except ProfileError as problem:
            raise ProfileError(f"{path}: {problem}") from None

    def differences(self, other: DeviceProfile) -> dict[str, tuple[Any, Any]]:
        """Fields (other than ``name``) whose values differ, as (self, other) pairs."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if f.name != "name" and getattr(self, f.name) != getattr(other, f.name)
        }

    def check_compatible(self, other: DeviceProfile, what: str = "figures") -> None:
        """Raise :class:`ProfileMismatchError` unless ``other`` matches this profile."""
        diff = self.differences(other)
        if diff:
            listed = "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
            raise ProfileMismatchError(
                f"{what} were measured under another device profile "
                f"({self.name!r} vs {other.name!r}): {listed}. Re-measure on this profile."
            )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))
