"""benchmarks/gpu_train.py runs end to end (here on the CPU, with a tiny budget), so the
command is ready for the day a GPU is lent."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"


@pytest.mark.slow
def test_gpu_benchmark_script_runs_with_a_tiny_budget(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in ("a", "b"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = gen.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    spec = importlib.util.spec_from_file_location("gpu_train", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out.json"
    results = module.main(
        ["--data", str(tmp_path / "data"), "--batch-size", "8", "--rounds", "2",
         "--epochs", "1", "--workers", "1", "--json", str(out)]
    )  # fmt: skip
    assert out.is_file() and results["device"] == "cpu"
    for precision in ("float32", "bfloat16"):
        step = results["step"][precision]
        assert step["supernet_images_per_second"] > 0 and math.isfinite(
            step["supernet_over_static"]
        )
    epoch = results["epochs"]
    assert epoch["steps"] == 3 and epoch["num_workers"] == 1 and epoch["precision"] == "float32"
    record = epoch["history"][0]
    assert record["images_per_second"] > 0 and 0 <= record["data_wait_share"] <= 1
