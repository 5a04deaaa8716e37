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

from onefit.errors import UserError

# Libraries whose version can change a measured figure.
TRACKED_LIBRARIES = ("torch", "onnxruntime", "onefit")


class ProfileMismatchError(UserError):
    """Figures measured under different device profiles were about to be mixed."""


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
    def from_dict(cls, data: dict[str, Any]) -> DeviceProfile:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(
                f"unknown device profile fields {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**{**data, "versions": dict(data.get("versions", {}))})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))

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
