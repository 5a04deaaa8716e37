"""Latency lookup tables: units, coverage, build, save/reload, prediction = sum of entries."""

from __future__ import annotations

import json

import pytest
import torch

import onefit
from onefit.profiling import LatencyTable, LatencyTableError, build_latency_table
from onefit.supernets.base import Supernet

FAMILIES = {
    "mobilenetv3": dict(num_classes=10, image_size=32, resolutions=(24, 32), width_mult=0.5),
    "resnet": dict(num_classes=10, image_size=32, base_width=8),
    "vit": dict(num_classes=10, image_size=16),
}
SMALL_MBV3 = dict(
    num_classes=10, image_size=16, resolutions=(12, 16), width_mult=0.5,
    kernel_sizes=(3, 5), expand_ratios=(3, 4), depths=(1, 2),
)  # fmt: skip


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    torch.manual_seed(0)
    net = onefit.create_supernet("mobilenetv3", **SMALL_MBV3).eval()
    return build_latency_table(net, runtime="eager", threads=1, warmup=1, repeats=3,
                               progress=False)  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_analytic_units_partition_layers_like_their_structure(family):
    """Two layers share a key exactly when their structure and input shape are equal."""
    net = onefit.create_supernet(family, **FAMILIES[family]).eval()
    configs = [net.space.smallest(), net.space.largest(), *net.space.sample_many(12, seed=1)]
    analytic_to_generic: dict[str, set[str]] = {}
    for config in configs:
        analytic, generic = net.units(config), Supernet.units(net, config)
        assert len(analytic) == len(generic) == len(list(net.extract(config).children()))
        for a, g in zip(analytic, generic):
            analytic_to_generic.setdefault(a, set()).add(g)
    assert all(len(g) == 1 for g in analytic_to_generic.values())
    generic_keys = [next(iter(g)) for g in analytic_to_generic.values()]
    assert len(set(generic_keys)) == len(generic_keys)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_profiling_configs_cover_every_unit_of_random_configs(family):
    net = onefit.create_supernet(family, **FAMILIES[family])
    covered = {key for config in net.profiling_configs() for key in net.units(config)}
    for config in net.space.sample_many(100, seed=2):
        assert set(net.units(config)) <= covered


def test_prediction_is_the_sum_of_entries_less_repeated_call_overhead(table):
    net = table.net
    assert net is not None
    overhead = table.call_overhead_ms
    assert 0 < overhead <= min(e["median_ms"] for e in table.entries.values())
    for config in net.space.sample_many(20, seed=0):
        keys = net.units(config)
        expected = sum(table.entries[k]["median_ms"] for k in keys) - (len(keys) - 1) * overhead
        assert table.predict(config) == pytest.approx(expected, rel=1e-12)
    assert len(table.entries) == table.settings["units"]
    assert all(e["median_ms"] > 0 for e in table.entries.values())


def test_saved_table_reloads_and_predicts_the_same_without_the_supernet(table, tmp_path):
    path = tmp_path / "lut.json"
    table.save(path)
    loaded = LatencyTable.load(path)  # rebuilds the supernet structure on the meta device
    assert loaded.entries == table.entries and loaded.profile == table.profile
    assert loaded.supernet == {"name": "mobilenetv3", "kwargs": json.loads(json.dumps(SMALL_MBV3))}
    configs = table.net.space.sample_many(10, seed=3)
    assert list(loaded.predict_many(configs)) == list(table.predict_many(configs))
    assert not (tmp_path / "lut.json.tmp").exists()


def test_larger_configs_predict_slower(table):
    space = table.net.space
    assert table.predict(space.largest()) > table.predict(space.smallest())


def test_a_unit_missing_from_the_table_is_a_clear_error(table):
    config = table.net.space.largest()
    partial = LatencyTable(table.supernet, table.profile, dict(table.entries), table.settings)
    partial.entries.pop(table.net.units(config)[3])
    with pytest.raises(LatencyTableError, match="not in the table"):
        partial.predict(config)


def test_missing_or_corrupt_table_files_name_the_file(tmp_path):
    with pytest.raises(LatencyTableError, match=r"no latency table at .*nope\.json"):
        LatencyTable.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LatencyTableError, match=r"bad\.json is not a latency table"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps({"format": "onefit-latency-table/1", "entries": {"a": 1}}))
    with pytest.raises(LatencyTableError, match=r"bad\.json: .*profile"):
        LatencyTable.load(bad)


def test_onnxruntime_table_for_resnet():
    pytest.importorskip("onnxruntime")
    net = onefit.create_supernet("resnet", num_classes=10, image_size=16, base_width=4)
    table = build_latency_table(net, runtime="onnxruntime", threads=1, warmup=1, repeats=2,
                                progress=False)  # fmt: skip
    assert table.profile.runtime == "onnxruntime"
    config = net.space.sample(seed=0)
    assert table.predict(config) > 0


def test_calibration_fits_scale_and_offset_and_survives_save(table, tmp_path):
    configs = table.net.space.sample_many(6, seed=4)
    raw = [table.raw_predict(c) for c in configs]
    measured = [1.5 * r + 0.25 for r in raw]  # a known linear distortion
    fitted = table.calibrate(configs, measured)
    assert fitted["scale"] == pytest.approx(1.5) and fitted["offset"] == pytest.approx(0.25)
    assert [table.predict(c) for c in configs] == pytest.approx(measured)
    table.save(tmp_path / "lut.json")
    assert LatencyTable.load(tmp_path / "lut.json").predict(configs[0]) == pytest.approx(
        measured[0]
    )
    table.settings.pop("calibration")
    with pytest.raises(ValueError, match="at least two configs"):
        table.calibrate(configs[:1], measured[:1])


def test_predictions_stay_positive_when_the_overhead_estimate_is_noisy(table):
    noisy = LatencyTable(table.supernet, table.profile, table.entries,
                         {**table.settings, "call_overhead_ms": 1e3}, table.net)  # fmt: skip
    # A table built by build_latency_table caps the overhead at its fastest unit.
    assert table.call_overhead_ms <= min(e["median_ms"] for e in table.entries.values())
    assert all(table.predict(c) > 0 for c in table.net.space.sample_many(20, seed=5))
    assert noisy.predict(table.net.space.smallest()) < 0  # what the cap prevents
