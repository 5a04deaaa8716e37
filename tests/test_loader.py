"""The input pipeline: epoch order, seeded augmentation, recipes, lazy folders, Hugging Face
datasets, and unreadable files, all through the loader with worker processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onefit.data import (
    DataError,
    create_recipe,
    from_huggingface,
    from_tensors,
    list_recipes,
    load_dataset,
)
from onefit.data.lazy import LazyImages
from onefit.data.loader import EpochBatches, SeededItems, item_seed, make_loader
from onefit.data.prepare import training_view
from onefit.training import TrainConfig, Trainer, train

SMALL = {"width_mult": 0.5, "depths": [1, 2], "expand_ratios": [2, 3], "kernel_sizes": [3]}
FAST = {"supernet_kwargs": SMALL, "batch_size": 16, "bn_batches": 2, "progress": False,
        "tensorboard": False, "epochs": 1}  # fmt: skip


# -- epoch order and item seeds --------------------------------------------------------------


def test_epoch_order_is_a_function_of_seed_and_epoch_and_resumes_at_a_batch() -> None:
    batches = EpochBatches(100, batch_size=8, seed=3)
    batches.set_epoch(2)
    whole = list(batches)
    assert len(whole) == 12 and all(len(b) == 8 for b in whole)  # the last 4 are dropped
    again = EpochBatches(100, batch_size=8, seed=3)
    again.set_epoch(2, start=5)
    assert list(again) == whole[5:]
    batches.set_epoch(3)
    assert list(batches) != whole  # another epoch, another order
    indices = [index for batch in whole for index, _ in batch]
    assert len(set(indices)) == 96
    seeds = [seed for batch in whole for _, seed in batch]
    assert seeds == [item_seed(3, 2, p) for p in range(96)] and len(set(seeds)) == 96


def test_ranks_take_disjoint_interleaved_shares_of_every_batch() -> None:
    single = EpochBatches(50, batch_size=12, seed=0)
    shares = [EpochBatches(50, batch_size=12, seed=0, rank=r, world_size=3) for r in range(3)]
    for sampler in (single, *shares):
        sampler.set_epoch(1)
    for b, batch in enumerate(single):
        parts = [list(share)[b] for share in shares]
        assert sorted(key for part in parts for key in part) == sorted(batch)
        assert all(len(part) == 4 for part in parts)
        assert parts[1] == batch[1::3]


def test_an_items_augmentation_depends_on_its_seed_not_on_the_process() -> None:
    splits = from_tensors(torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8),
                          torch.arange(64) % 4, val_fraction=0.25, seed=0)  # fmt: skip
    view = training_view(splits, create_recipe("cifar"))
    items = SeededItems(view)
    before = torch.get_rng_state()
    first = items[(5, 123)][0]
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is untouched
    assert torch.equal(items[(5, 123)][0], first)
    assert not torch.equal(items[(5, 124)][0], first)
    sampler = EpochBatches(len(view), batch_size=8, seed=0)
    sampler.set_epoch(0)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(view, sampler, num_workers=workers, device=torch.device("cpu"))
        batches[workers] = [inputs for inputs, _, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))
    assert len(batches[0]) == 6


# -- recipes (the conformance suite of the recipe registry) ---------------------------------


@pytest.fixture(scope="module")
def cifar_like():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), generator=gen, dtype=torch.uint8)
    return from_tensors(images, torch.arange(40) % 4, val_fraction=0.25, seed=0)


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_changes_training_inputs_and_never_evaluation_inputs(name: str) -> None:
    recipe = create_recipe(name)
    splits = load_dataset("digits", image_size=32, in_channels=3, recipe=recipe)
    train_items = SeededItems(training_view(splits, recipe))
    evaluation = [splits.val[i][0] for i in range(len(splits.val))]
    # Evaluation is deterministic: the same input every time, whatever the generator.
    torch.manual_seed(99)
    assert all(torch.equal(splits.val[i][0], x) for i, x in enumerate(evaluation))
    assert all(x.shape == (3, 32, 32) and x.dtype == torch.float32 for x in evaluation)
    eval_train = [splits.train[i][0] for i in range(8)]
    augmented = [train_items[(i, 1000 + i)][0] for i in range(8)]
    if recipe.augments:
        assert sum(not torch.equal(a, e) for a, e in zip(augmented, eval_train)) >= 6
    else:  # "none": training reads exactly what evaluation reads
        assert all(torch.equal(a, e) for a, e in zip(augmented, eval_train))
    # Normalized with the train split's statistics: zero mean, unit std per channel
    # (imagenet's center crop leaves out the border the statistics include).
    stacked = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    if name != "imagenet":
        torch.testing.assert_close(stacked.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3, rtol=0)
        torch.testing.assert_close(stacked.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
    assert splits.preprocessing["recipe"]["name"] == name


def test_imagenet_evaluation_is_a_center_crop_at_the_usual_ratio() -> None:
    recipe = create_recipe("imagenet")
    evaluate = recipe.eval_transform(32, mean=(0.0,) * 3, std=(1.0,) * 3)

    def framed(width: int) -> torch.Tensor:  # white inside a black frame, 74 x 74
        image = torch.zeros(3, 74, 74, dtype=torch.uint8)
        image[:, width:-width, width:-width] = 255
        return image

    # Resized to 37 (= 32 / 0.875), the frame is half as wide; the center 32 x 32 crop
    # drops 2.5 px on each side: a 2 px frame (1 px at 37) goes, an 8 px one (4 px) stays.
    thin, wide = evaluate(framed(2)), evaluate(framed(8))
    assert thin.shape == wide.shape == (3, 32, 32)
    assert thin.min() > 0.99 and wide[:, 0, 0].max() < 0.01
    assert recipe.describe_eval(32) == "resize shorter side to 37, center crop 32x32"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auto_augment": "autoaugment"}, "auto_augment must be one of"),
        ({"mixup_alpha": -1}, "mixup_alpha must be a finite number >= 0"),
        ({"cutmix_alpha": "a"}, "cutmix_alpha must be a number"),
        ({"padding": 4, "scale": (0.1, 1)}, "unexpected keyword argument 'scale'"),
    ],
)
def test_bad_recipe_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_recipe("cifar", **kwargs)


def test_auto_augment_and_mixup_change_training_only(cifar_like) -> None:
    recipe = create_recipe("none", auto_augment="trivialaugment", mixup_alpha=0.4)
    assert recipe.augments_items
    items = SeededItems(training_view(cifar_like, recipe))
    changed = [not torch.equal(items[(i, i)][0], cifar_like.train[i][0]) for i in range(10)]
    assert sum(changed) >= 5  # TrivialAugment may draw the identity for a few
    mix = recipe.batch_transform(num_classes=4)
    torch.manual_seed(0)
    _, labels = mix(torch.randn(8, 3, 32, 32), torch.arange(8) % 4)
    assert labels.shape == (8, 4) and torch.allclose(labels.sum(1), torch.ones(8))
    assert create_recipe("none").batch_transform(4) is None


# -- lazy sources -----------------------------------------------------------------------------


def write_folder(root: Path, per_class: int = 12, size: int = 20, split: str = "") -> None:
    gen = np.random.default_rng(0)
    for c, name in enumerate(("ant", "bee", "cat")):
        folder = root / split / name if split else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = gen.integers(0, 60, (size, size + 4, 3), dtype=np.uint8) + 60 * c
            Image.fromarray(pixels).save(folder / f"{i}.jpg" if i % 2 else folder / f"{i}.png")


def test_image_folder_is_read_lazily_and_trains_one_epoch_through_workers(tmp_path: Path) -> None:
    write_folder(tmp_path / "data", split="train")
    write_folder(tmp_path / "data", per_class=4, split="val")
    splits = load_dataset(tmp_path / "data", image_size=16)
    assert isinstance(splits.train, LazyImages) and not hasattr(splits.train, "_images")
    assert (len(splits.train), len(splits.val)) == (36, 12)  # val/ is the validation split
    assert splits.preprocessing["statistics"].startswith("estimated on 36 of 36 train images")
    settings = {**FAST, "dataset": str(tmp_path / "data"), "image_size": 16,
                "augment": "cifar", "num_workers": 2, "run_dir": str(tmp_path / "run")}  # fmt: skip
    result = train(settings)
    assert result.finished and result.steps == 2
    record = result.history[0]
    assert record["images_per_second"] > 0 and 0 <= record["data_wait_share"] < 1
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["preprocessing"]["recipe"]["name"] == "cifar"
    assert resolved["preprocessing"]["mean"] == list(splits.mean)
    assert resolved["num_workers_used"] == 2


def test_bn_calibration_reads_every_class_of_a_folder_stored_class_by_class(
    tmp_path: Path,
) -> None:
    """Image folders list files class by class: the first 8 of these 36 are all "ant".
    BN statistics of one class mis-calibrate every sub-network, so calibration reads a
    fixed sample spread over the split, in training (the trainer's evaluations) as in
    search and export (``train_tensors(limit=)``)."""
    write_folder(tmp_path / "data", split="train")
    write_folder(tmp_path / "data", per_class=4, split="val")
    splits = load_dataset(tmp_path / "data", image_size=16)
    assert splits.train[7][1] == splits.train[0][1]  # stored class by class
    _, labels = splits.train_tensors(limit=8)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert torch.equal(splits.train_tensors(limit=8)[1], labels)  # the same every call
    settings = {**FAST, "dataset": str(tmp_path / "data"), "image_size": 16, "batch_size": 4,
                "bn_batches": 2, "num_workers": 0, "run_dir": str(tmp_path / "run")}  # fmt: skip
    calibration, _ = Trainer(TrainConfig.from_dict(settings))._eval_batches()
    seen = torch.cat([targets for _, targets in calibration])
    assert len(seen) == 8 and sorted(set(seen.tolist())) == [0, 1, 2]


def test_a_corrupt_image_is_named_from_the_worker_or_skipped_with_a_warning(
    tmp_path: Path,
) -> None:
    write_folder(tmp_path / "data", per_class=30)
    bad = tmp_path / "data" / "bee" / "7.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    # Statistics given, so no image is read before training: a worker meets the bad file.
    settings = {**FAST, "dataset": str(tmp_path / "data"), "image_size": 16, "num_workers": 2,
                "batch_size": 30, "mean": [0.5] * 3, "std": [0.25] * 3,
                "run_dir": str(tmp_path / "run")}  # fmt: skip
    with pytest.raises(DataError) as info:
        train(settings)
    message = str(info.value)
    assert str(bad) in message and "cannot read this image" in message
    assert "Traceback" not in message and "worker" not in message
    with pytest.warns(UserWarning, match=rf"skipped an unreadable sample: {bad}"):
        result = train({**settings, "bad_items": "skip", "run_dir": str(tmp_path / "skip")})
    assert result.finished


def test_hugging_face_dataset_trains_one_epoch_in_memory_and_from_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    gen = np.random.default_rng(1)
    images = [Image.fromarray(gen.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(48)]
    features = datasets.Features(
        {"picture": datasets.Image(), "kind": datasets.ClassLabel(names=["x", "y", "z"])}
    )
    table = datasets.Dataset.from_dict(
        {"picture": images, "kind": [i % 3 for i in range(48)]}, features=features
    )
    whole = datasets.DatasetDict(
        {"train": table.select(range(36)), "test": table.select(range(36, 48))}
    )
    splits = from_huggingface(whole, recipe=create_recipe("cifar"))
    assert splits.classes == ("x", "y", "z") and (len(splits.train), len(splits.val)) == (36, 12)
    x, y = splits.val[0]
    assert x.shape == (3, 12, 12) and y == 0
    result = train({**FAST, "augment": "cifar", "num_workers": 2, "run_dir": str(tmp_path / "a")},
                   data=splits)  # fmt: skip
    assert result.finished
    whole.save_to_disk(str(tmp_path / "saved"))
    from_disk = load_dataset(tmp_path / "saved")
    assert from_disk.classes == splits.classes and from_disk.mean == splits.mean
    result = train({**FAST, "dataset": str(tmp_path / "saved"), "num_workers": 1,
                    "run_dir": str(tmp_path / "b")})  # fmt: skip
    assert result.finished
    two = datasets.Dataset.from_dict(
        {"a": images[:2], "b": images[:2], "label": [0, 1]},
        features=datasets.Features(
            {"a": datasets.Image(), "b": datasets.Image(), "label": datasets.Value("int64")}
        ),
    )
    with pytest.raises(DataError, match=r"which column holds the images \(candidates \['a', 'b'\]"):
        from_huggingface(two)
    assert from_huggingface(two, image_column="b", val_fraction=0.5).classes == ("0", "1")
    with pytest.raises(DataError, match="no column 'photo'"):
        from_huggingface(table, image_column="photo")


def test_a_saved_hugging_face_folder_without_the_datasets_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["train"]}')
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes "import datasets" fail
    with pytest.raises(
        ImportError, match=r"pip install datasets \(or pip install 'onefit\[hf\]'\)"
    ):
        load_dataset(tmp_path)
