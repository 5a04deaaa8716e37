"""Latency lookup tables, Once-for-All style, built on the user's own device.

A sub-network is a chain of units (stem, blocks, head; see ``Supernet.units``). Many
configs share units, and a supernet has far fewer distinct units than sub-networks, so
each distinct unit is measured once and a config's latency is predicted as the sum of
its units' medians. Once-for-All shipped such tables for its own devices but never the
builder; :func:`build_latency_table` is that builder.

Example:
    >>> import onefit
    >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=8,
    ...                              kernel_sizes=(3,), expand_ratios=(3,), depths=(1,))
    >>> table = build_latency_table(net, runtime="eager", warmup=1, repeats=3, progress=False)
    >>> config = net.space.largest()
    >>> keys = net.units(config)
    >>> total = sum(table.entries[key]["median_ms"] for key in keys)
    >>> table.predict(config) == total - (len(keys) - 1) * table.call_overhead_ms
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import track
from torch import nn

from onefit.digest import read_document, seal
from onefit.errors import UserError
from onefit.files import write_json_atomic
from onefit.metrics.device import DeviceProfile, ProfileError, ProfileMismatchError
from onefit.metrics.latency import check_timing_settings, measure_latency
from onefit.metrics.runtimes import get_runtime
from onefit.supernets import Supernet, rebuild_supernet

# Format 2 adds the sha256 of the content (checked on load). Format 1 files (no hash)
# are still read, with the same structural checks; saving one writes format 2.
FORMAT = "onefit-latency-table/2"
READABLE_FORMATS = (FORMAT, "onefit-latency-table/1")


class LatencyTableError(UserError):
    """A latency table file is missing, corrupt, or does not fit the supernet asked of it."""


@dataclass
class LatencyTable:
    """Measured latency (ms) of every distinct unit of a supernet, on one device profile."""

    supernet: dict[str, Any] | None  # {"name": ..., "kwargs": ...} as given to create_supernet
    profile: DeviceProfile
    entries: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)
    net: Supernet | None = field(default=None, repr=False, compare=False)

    def _supernet(self) -> Supernet:
        if self.net is None:
            if self.supernet is None:
                raise LatencyTableError(
                    "this table was built for a supernet not made by create_supernet; "
                    "pass it: LatencyTable.load(path, net=your_supernet)"
                )
            # Only the structure is needed to name units: no memory for weights.
            with torch.device("meta"):
                self.net = rebuild_supernet(self.supernet)
        return self.net

    def breakdown(self, config: Mapping[str, Any]) -> list[tuple[str, float]]:
        """(unit key, median ms) for each unit of ``config``, in order."""
        keys = self._supernet().units(config)
        missing = [k for k in keys if k not in self.entries]
        if missing:
            raise LatencyTableError(
                f"{len(missing)} unit(s) of this config are not in the table (first: "
                f"{missing[0]!r}); rebuild it with build_latency_table for this supernet"
            )
        return [(k, self.entries[k]["median_ms"]) for k in keys]

    @property
    def call_overhead_ms(self) -> float:
        """Median time of running a no-op model on the runtime (paid once per call)."""
        return float(self.settings.get("call_overhead_ms", 0.0))

    def raw_predict(self, config: Mapping[str, Any]) -> float:
        """The sum of ``config``'s units' medians, less the per-call overhead that each
        unit's measurement included but a whole model pays only once."""
        units = self.breakdown(config)
        return float(sum(ms for _, ms in units) - (len(units) - 1) * self.call_overhead_ms)

    def predict(self, config: Mapping[str, Any]) -> float:
        """Predicted latency (ms) of ``config``: :meth:`raw_predict`, then the linear
        calibration from :meth:`calibrate` when there is one."""
        calibration = self.settings.get("calibration")
        raw = self.raw_predict(config)
        if not calibration:
            return raw
        return float(calibration["scale"] * raw + calibration["offset"])

    def calibrate(
        self, configs: Sequence[Mapping[str, Any]], measured_ms: Sequence[float]
    ) -> dict[str, float]:
        """Fit ``measured = scale * raw + offset`` by least squares on whole-model timings.

        Units timed one by one miss what a whole model shares (warm caches, fused
        memory traffic), which shifts and scales the sum but hardly changes the order;
        a few whole-model measurements on the same profile correct that.
        """
        if len(configs) != len(measured_ms) or len(configs) < 2:
            raise UserError("calibrate needs at least two configs and one timing per config")
        raw = np.array([self.raw_predict(c) for c in configs])
        scale, offset = np.polyfit(raw, np.asarray(measured_ms, dtype=float), 1)
        self.settings["calibration"] = {"scale": float(scale), "offset": float(offset),
                                        "configs": len(configs)}  # fmt: skip
        return dict(self.settings["calibration"])

    def predict_many(self, configs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        return np.array([self.predict(c) for c in configs], dtype=float)

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "supernet": self.supernet,
            "profile": self.profile.to_dict(),
            "settings": self.settings,
            "entries": self.entries,
        }

    def save(self, path: str | Path) -> None:
        """Write the table as JSON with the sha256 of its content (atomically: temporary
        file, then rename)."""
        write_json_atomic(path, seal(self.to_dict()), indent=1)

    def check_profile(self, target: DeviceProfile) -> None:
        """Raise :class:`ProfileMismatchError` (naming both profiles and the fields that
        differ) unless the table was measured on a profile compatible with ``target``."""
        diff = self.profile.differences(target)
        if diff:
            listed = "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
            raise ProfileMismatchError(
                f"the latency table was measured on device profile {self.profile.name!r}, "
                f"not on the target profile {target.name!r} ({listed}); build a table on "
                "the target with onefit profile"
            )

    @classmethod
    def load(
        cls,
        path: str | Path,
        net: Supernet | None = None,
        *,
        profile: DeviceProfile | None = None,
    ) -> LatencyTable:
        """Read a table written by :meth:`save`; errors name the file and what is wrong.

        The content must match its sha256 and every entry must be a finite positive
        median (and a finite IQR >= 0). With ``profile``, the table must have been
        measured on that device profile (:meth:`check_profile`).
        """
        path = Path(path)
        data = read_document(path, READABLE_FORMATS, "latency table", LatencyTableError)
        table = cls(
            _supernet_spec(path, data.get("supernet")),
            _profile(path, data.get("profile")),
            _entries(path, data.get("entries")),
            _settings(path, data.get("settings", {})),
            net,
        )
        overhead = table.call_overhead_ms
        fastest = min(e["median_ms"] for e in table.entries.values())
        if overhead > fastest:
            raise LatencyTableError(
                f"{path}: settings.call_overhead_ms {overhead} exceeds the fastest unit's "
                f"median ({fastest} ms); every unit's time includes one call's overhead"
            )
        if profile is not None:
            table.check_profile(profile)
        return table


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entries(path: Path, entries: Any) -> dict[str, dict[str, float]]:
    if not isinstance(entries, dict) or not entries:
        raise LatencyTableError(
            f"{path}: 'entries' must be a non-empty object of unit -> timings, got "
            f"{type(entries).__name__}"
        )
    checked = {}
    for key, value in entries.items():
        if not isinstance(value, dict) or set(value) != {"median_ms", "iqr_ms"}:
            keys = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise LatencyTableError(
                f"{path}: entry {key!r} must hold exactly median_ms and iqr_ms, got {keys}"
            )
        median, iqr = value["median_ms"], value["iqr_ms"]
        if not _finite(median) or median <= 0:
            raise LatencyTableError(
                f"{path}: entry {key!r} has median_ms {median!r}; a latency must be a "
                "finite number > 0"
            )
        if not _finite(iqr) or iqr < 0:
            raise LatencyTableError(
                f"{path}: entry {key!r} has iqr_ms {iqr!r}; it must be a finite number >= 0"
            )
        checked[key] = {"median_ms": float(median), "iqr_ms": float(iqr)}
    return checked


def _profile(path: Path, data: Any) -> DeviceProfile:
    try:
        return DeviceProfile.from_dict(data)
    except ProfileError as problem:
        raise LatencyTableError(f"{path}: 'profile': {problem}") from None


def _settings(path: Path, settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise LatencyTableError(f"{path}: 'settings' must be an object")
    overhead = settings.get("call_overhead_ms", 0.0)
    if not _finite(overhead) or overhead < 0:
        raise LatencyTableError(
            f"{path}: settings.call_overhead_ms must be a finite number >= 0, got {overhead!r}"
        )
    calibration = settings.get("calibration")
    if calibration not in (None, {}) and (
        not isinstance(calibration, dict)
        or not all(_finite(calibration.get(k)) for k in ("scale", "offset"))
    ):
        raise LatencyTableError(
            f"{path}: settings.calibration must hold finite scale and offset, got {calibration!r}"
        )
    return settings


def _supernet_spec(path: Path, spec: Any) -> dict[str, Any] | None:
    if spec is not None and not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
        raise LatencyTableError(
            f"{path}: 'supernet' must be null or an object with a name, got {spec!r}"[:300]
        )
    return spec


def collect_units(net: Supernet) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Every distinct unit of ``net`` as (static module, one sample's input shape).

    Walks ``net.profiling_configs()``; a config is extracted only if it has a unit not
    seen before.
    """
    units: dict[str, tuple[nn.Module, tuple[int, ...]]] = {}
    for config in net.profiling_configs():
        keys = net.units(config)
        if all(k in units for k in keys):
            continue
        layers = list(net.extract(config).children())
        if len(layers) != len(keys):
            raise RuntimeError(
                f"{type(net).__name__}.units() gave {len(keys)} keys for a model with "
                f"{len(layers)} top-level layers; they must correspond one to one"
            )
        x = torch.zeros(1, *net.input_shape(config), device=next(net.parameters()).device)
        with torch.no_grad():
            for key, layer in zip(keys, layers):
                if key not in units:
                    units[key] = (layer, tuple(x.shape[1:]))
                x = layer(x)
    return units


def build_latency_table(
    net: Supernet,
    *,
    runtime: str = "eager",
    device: str = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 30,
    progress: bool = True,
) -> LatencyTable:
    """Measure each distinct unit of ``net`` once on ``runtime`` and return the table.

    ``net`` may be the trained supernet or a freshly built one of the same family and
    arguments: latency depends on shapes, not weight values.
    """
    threads = torch.get_num_threads() if threads is None else threads
    check_timing_settings(warmup, repeats, batch_size, threads)
    get_runtime(runtime).check(device)
    profile = DeviceProfile.detect(
        runtime=runtime, device=device, threads=threads, batch_size=batch_size
    )
    timing = dict(runtime=runtime, device=device, batch_size=batch_size, threads=threads,
                  warmup=warmup, repeats=repeats, profile=profile)  # fmt: skip
    started = time.perf_counter()
    units = collect_units(net)
    entries = {}
    items = list(units.items())
    for key, (layer, shape) in track(
        items, description=f"profiling {len(items)} units", disable=not progress
    ):
        result = measure_latency(layer, shape, **timing)  # type: ignore[arg-type]
        entries[key] = {"median_ms": result.median_ms, "iqr_ms": result.iqr_ms}
    overhead = measure_latency(nn.Identity(), net.input_shape(), **timing)  # type: ignore[arg-type]
    settings = {
        # Every unit's time includes one call's overhead, so the overhead cannot exceed
        # the fastest unit: capping a noisy estimate keeps predictions positive.
        "call_overhead_ms": min(overhead.median_ms, min(e["median_ms"] for e in entries.values())),
        "warmup": warmup,
        "repeats": repeats,
        "units": len(entries),
        "profiling_seconds": time.perf_counter() - started,
    }
    return LatencyTable(getattr(net, "spec", None), profile, entries, settings, net)
