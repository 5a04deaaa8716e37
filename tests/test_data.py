"""Tests for onefit.data: built-in digits, IDX, CIFAR and ImageFolder loading, splits.

Every on-disk fixture is written here into ``tmp_path`` (IDX with numpy + gzip, CIFAR
with pickle, images with Pillow), so the tests need no download and no ../shared.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from onefit.data import (
    DATASETS,
    DataError,
    DataSplits,
    from_tensors,
    list_datasets,
    load_dataset,
)

# -- helpers ------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """Write ``array`` (uint8) as an IDX file: magic 0x0000 08 NN, dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(
    folder: Path, prefix: str, n: int, *, gz: bool, seed: int = 0, dot: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    sep = "." if dot else "-"
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, gz=gz)
    write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, gz=gz)
    return images, labels


def unit_pixels(splits: DataSplits, split: str = "train") -> torch.Tensor:
    """Undo the normalization: the split's images back in [0, 1]."""
    x, _ = splits.train_tensors() if split == "train" else splits.val_tensors()
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    return x * std + mean


def stored_pixels(splits: DataSplits, split: str = "train") -> torch.Tensor:
    """The split's images back on their 0..255 scale."""
    return (unit_pixels(splits, split) * 255).round()


def assert_pixels_match(splits: DataSplits, images: np.ndarray, labels: np.ndarray) -> None:
    """Both splits together hold exactly ``images``/``labels`` (N, C, H, W), at their indices."""
    for split, dataset in (("train", splits.train), ("val", splits.val)):
        expected = torch.from_numpy(images[dataset.indices.numpy()]).float()
        torch.testing.assert_close(stored_pixels(splits, split), expected, atol=0, rtol=0)
        assert dataset.labels.tolist() == labels[dataset.indices.numpy()].tolist()


def write_pickle(path: Path, obj: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def cifar_batch(n: int, seed: int, labels_key: str = "labels") -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    # The real files have bytes keys (Python 2 str) and plain lists of labels.
    batch = {
        b"batch_label": b"training batch",
        labels_key.encode(): [int(v) for v in labels],
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return batch, data


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar10(folder: Path, *, batches: int = 2, n: int = 6, protocol: int = 4) -> np.ndarray:
    """Write a CIFAR-10 folder; return the training images as (N, 3, 32, 32)."""
    rows = []
    for i in range(1, batches + 1):
        batch, data = cifar_batch(n, seed=i)
        write_pickle(folder / f"data_batch_{i}", batch, protocol)
        rows.append(data)
    test, _ = cifar_batch(n, seed=99)
    write_pickle(folder / "test_batch", test, protocol)
    meta = {b"label_names": [name.encode() for name in CIFAR10_NAMES], b"num_vis": 3072}
    write_pickle(folder / "batches.meta", meta, protocol)
    return np.concatenate(rows).reshape(-1, 3, 32, 32)


def py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """What Python 2 with numpy 1.x wrote for ``{'data': data, 'labels': labels}``.

    The real CIFAR files look like this: protocol 2, ``str`` keys and array bytes as
    Python 2 byte strings (``U``/``T`` opcodes), ``numpy.core`` names. Python 3 cannot
    write such a pickle, so the opcodes are spelled out.
    """

    def string(value: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING
        if len(value) < 256:
            return b"U" + bytes([len(value)]) + value
        return b"T" + len(value).to_bytes(4, "little") + value

    def int_(value: int) -> bytes:  # BININT
        return b"J" + value.to_bytes(4, "little", signed=True)

    rows, columns = data.shape
    dtype = (
        b"cnumpy\ndtype\n" + string(b"u1") + int_(0) + int_(1) + b"\x87R"  # dtype('u1', 0, 1)
        + b"(" + int_(3) + string(b"|") + b"NNN" + int_(-1) + int_(-1) + int_(0) + b"tb"
    )  # fmt: skip
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
        + int_(0) + b"\x85" + string(b"b") + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
        + b"(" + int_(1) + int_(rows) + int_(columns) + b"\x86" + dtype
        + b"\x89" + string(data.tobytes()) + b"tb"  # __setstate__((1, shape, dtype, False, raw))
    )  # fmt: skip
    label_list = b"](" + b"".join(int_(v) for v in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list + b"u."


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int]) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


# -- registry and the built-in dataset ----------------------------------------------------


def test_registered_sources() -> None:
    assert list_datasets() == ["cifar", "digits", "huggingface", "idx", "imagefolder"]


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_folder_format_rejects_an_empty_folder(name: str, tmp_path: Path) -> None:
    """Conformance: formats do not claim an empty folder, and loading it names the folder."""
    source = DATASETS.create(name)
    if not source.needs_path:
        raw = source.load(None, image_size=None, in_channels=None)
        assert raw.images.ndim == 4 and raw.labels.shape == (len(raw.images),)
        return
    assert source.expected
    assert not source.detect(tmp_path)
    with pytest.raises(DataError, match=str(tmp_path)):
        source.load(tmp_path, image_size=None, in_channels=None)


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset("digits", val_fraction=0.2, seed=0)


def test_digits_shapes_and_counts(digits: DataSplits) -> None:
    assert (len(digits.train), len(digits.val)) == (1438, 359)
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 8)
    assert digits.name == "digits"
    assert digits.classes == tuple("0123456789")
    x, y = digits.train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8)
    assert isinstance(y, int) and 0 <= y < 10
    assert digits.describe().startswith("digits: 1438 train / 359 val images, 1x8x8, 10 classes")


def test_digits_values_are_scaled_to_unit_range(digits: DataSplits) -> None:
    from sklearn.datasets import load_digits

    raw = load_digits().images / 16.0
    expected = torch.from_numpy(raw[digits.train.indices.numpy()]).float().unsqueeze(1)
    torch.testing.assert_close(unit_pixels(digits), expected, atol=1e-6, rtol=0)


def test_normalization_uses_train_statistics(digits: DataSplits) -> None:
    x, y = digits.train_tensors()
    assert x.shape == (1438, 1, 8, 8) and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1e-5
    assert abs(float(x.std(unbiased=False)) - 1) < 1e-4
    # Items and the bulk tensors are the same numbers.
    item, label = digits.train[5]
    assert torch.equal(item, x[5]) and label == int(y[5])
    # The validation split is normalized with the train statistics, not its own.
    val_x, _ = digits.val_tensors()
    assert abs(float(val_x.mean())) > 1e-4


def test_dataloader_batches(digits: DataSplits) -> None:
    x, y = next(iter(DataLoader(digits.train, batch_size=16, shuffle=True)))
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_digits_resized_to_rgb() -> None:
    splits = load_dataset("digits", image_size=16, in_channels=3)
    assert (splits.in_channels, splits.image_size) == (3, 16)
    x, _ = splits.train[0]
    assert x.shape == (3, 16, 16)
    # A gray image turned RGB has three equal channels before normalization.
    pixels = stored_pixels(splits)
    assert torch.equal(pixels[:, 0], pixels[:, 1]) and torch.equal(pixels[:, 1], pixels[:, 2])


# -- splits ---------------------------------------------------------------------------------


def split_sets(splits: DataSplits) -> tuple[list[int], list[int]]:
    return splits.train.indices.tolist(), splits.val.indices.tolist()


def test_split_is_deterministic_disjoint_and_complete() -> None:
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(50) % 5
    a = split_sets(from_tensors(images, labels, val_fraction=0.3, seed=7))
    b = split_sets(from_tensors(images, labels, val_fraction=0.3, seed=7))
    c = split_sets(from_tensors(images, labels, val_fraction=0.3, seed=8))
    assert a == b
    assert a != c
    train, val = a
    assert (len(train), len(val)) == (35, 15)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(50))


def test_split_is_the_same_on_every_machine() -> None:
    """The split comes from numpy's PCG64 permutation, which is platform independent."""
    images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    splits = from_tensors(images, torch.zeros(10, dtype=torch.int64), val_fraction=0.3, seed=0)
    assert splits.val.indices.tolist() == sorted(np.random.default_rng(0).permutation(10)[:3])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True])
def test_val_fraction_outside_open_interval(fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=fraction)


def test_val_fraction_leaving_an_empty_split() -> None:
    images = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match="at least one sample"):
        from_tensors(images, torch.tensor([0, 1, 0]), val_fraction=0.1)


# -- from_tensors ---------------------------------------------------------------------------


def test_from_tensors_uint8() -> None:
    images = torch.randint(0, 256, (20, 3, 5, 5), dtype=torch.uint8)
    labels = torch.arange(20) % 4
    splits = from_tensors(images, labels, val_fraction=0.25, seed=0, name="mine")
    assert (len(splits.train), len(splits.val), splits.num_classes) == (15, 5, 4)
    assert (splits.in_channels, splits.image_size, splits.name) == (3, 5, "mine")
    assert len(splits.mean) == len(splits.std) == 3
    assert_pixels_match(splits, images.numpy(), labels.numpy())


def test_from_tensors_float_is_used_as_given() -> None:
    images = torch.rand(12, 1, 3, 3, dtype=torch.float64)
    labels = np.arange(12) % 3  # numpy labels are accepted too
    splits = from_tensors(images, labels, val_fraction=0.25, seed=0, classes=["a", "b", "c"])
    assert splits.classes == ("a", "b", "c") and splits.num_classes == 3
    x, _ = splits.train_tensors()
    train = images[splits.train.indices]
    mean, std = float(train.mean()), float(train.std(unbiased=False))
    assert splits.mean == pytest.approx((mean,)) and splits.std == pytest.approx((std,))
    torch.testing.assert_close(x, ((train - mean) / std).float())


def test_from_tensors_constant_channel_is_not_divided_by_zero() -> None:
    splits = from_tensors(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]), val_fraction=0.5)
    assert splits.std == (1.0,)
    assert torch.isfinite(splits.train[0][0]).all()


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (torch.zeros(4, 8, 8), torch.zeros(4, dtype=torch.int64), r"\(N, C, H, W\)"),
        (torch.zeros(4, 1, 8, 6), torch.zeros(4, dtype=torch.int64), "square"),
        (torch.zeros(4, 1, 8, 8), torch.zeros(5, dtype=torch.int64), "one per image"),
        (torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, dtype=torch.int64), "one per image"),
        (torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, -1, 0]), "labels must lie in"),
        (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64), "at least one image"),
    ],
)
def test_from_tensors_bad_shapes(images: torch.Tensor, labels: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_tensors(images, labels)


def test_from_tensors_bad_dtypes() -> None:
    with pytest.raises(TypeError, match="integers"):
        from_tensors(torch.zeros(4, 1, 2, 2), torch.zeros(4))
    with pytest.raises(TypeError, match="uint8"):
        from_tensors(torch.zeros(4, 1, 2, 2, dtype=torch.int32), torch.zeros(4, dtype=torch.int64))
    images, labels = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="num_classes=3"):
        from_tensors(images, labels, num_classes=3, classes=["a", "b"])


# -- paths and auto-detection -------------------------------------------------------------


def test_nonexistent_path_lists_what_is_available(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset(missing)
    message = str(info.value)
    assert str(missing) in message and "no such file or folder" in message
    for name in ("digits", "idx", "cifar", "imagefolder"):
        assert name in message


def test_unrecognized_folder_and_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no known dataset format"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="give the folder"):
        load_dataset(tmp_path / "notes.txt")


def test_bad_format_and_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'png'; known: cifar, digits"):
        load_dataset(tmp_path, format="png")
    with pytest.raises(ValueError, match="built-in dataset"):
        load_dataset(tmp_path, format="digits")
    with pytest.raises(ValueError, match="in_channels"):
        load_dataset("digits", in_channels=2)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=0)


# -- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_loads_train_pair(tmp_path: Path, gz: bool) -> None:
    images, labels = write_mnist(tmp_path, "train", 20, gz=gz, seed=1)
    write_mnist(tmp_path, "t10k", 5, gz=gz, seed=2)  # ignored: train exists
    splits = load_dataset(tmp_path, val_fraction=0.25, seed=0)
    assert (len(splits.train), len(splits.val)) == (15, 5)
    assert (splits.in_channels, splits.image_size, splits.name) == (1, 28, tmp_path.name)
    assert_pixels_match(splits, images[:, None], labels)


def test_idx_without_train_uses_every_pair_and_dot_names(tmp_path: Path) -> None:
    a_images, a_labels = write_mnist(tmp_path, "t10k", 6, gz=False, seed=3, dot=True)
    b_images, b_labels = write_mnist(tmp_path, "extra", 4, gz=True, seed=4)
    splits = load_dataset(tmp_path, format="idx", val_fraction=0.5)
    # Pairs are concatenated in sorted prefix order: "extra", then "t10k".
    images = np.concatenate([b_images, a_images])[:, None]
    assert_pixels_match(splits, images, np.concatenate([b_labels, a_labels]))


def test_idx_resized(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 10, gz=True)
    splits = load_dataset(tmp_path, image_size=16, in_channels=3)
    assert (splits.in_channels, splits.image_size) == (3, 16)
    assert splits.train[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, "train", 10, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])
    match = "corrupt or truncated gzip" if gz else "truncated: the header declares shape"
    with pytest.raises(DataError, match=match) as info:
        load_dataset(tmp_path)
    assert str(path) in str(info.value) and "IDX" in str(info.value)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 4, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    # A gzip file gzipped again (or a file of something else) under an IDX name.
    path.write_bytes(gzip.compress(gzip.compress(path.read_bytes())))
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    assert str(info.value).startswith(
        f"{path}: not an IDX image file (magic 0x00000803 expected, got 0x1f8b08"
    )
    assert str(info.value).endswith("expected MNIST/Fashion-MNIST IDX files (gzip or raw)")


def test_idx_labels_with_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 4, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((4, 2), np.uint8), gz=False)
    with pytest.raises(DataError, match="not an IDX label file") as info:
        load_dataset(tmp_path)
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_idx_mismatched_counts(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 10, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(9, np.uint8), gz=True)
    with pytest.raises(DataError, match=r"holds 10 images but train-labels-idx1-ubyte\.gz holds 9"):
        load_dataset(tmp_path)


def test_idx_missing_labels_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 4, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte") as info:
        load_dataset(tmp_path)
    assert "missing" in str(info.value) and "train-images-idx3-ubyte.gz" in str(info.value)


# -- CIFAR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_loads_training_batches(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    images = write_cifar10(folder, batches=2, n=6, protocol=protocol)
    splits = load_dataset(tmp_path, val_fraction=0.25)  # the parent folder is enough
    assert (len(splits.train), len(splits.val)) == (9, 3)  # test_batch is not used
    assert (splits.name, splits.in_channels, splits.image_size) == ("cifar10", 3, 32)
    assert splits.classes == tuple(CIFAR10_NAMES) and splits.num_classes == 10
    labels = np.concatenate([cifar_batch(6, seed=i)[0][b"labels"] for i in (1, 2)])
    assert_pixels_match(splits, images, labels)


def test_cifar_pickles_from_numpy_1(tmp_path: Path) -> None:
    """Files pickled by numpy 1.x (and the real CIFAR files) name numpy.core, not numpy._core."""
    batch, data = cifar_batch(4, seed=0)
    raw = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    (tmp_path / "data_batch_1").write_bytes(
        raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    )
    splits = load_dataset(tmp_path, val_fraction=0.5)
    assert_pixels_match(splits, data.reshape(-1, 3, 32, 32), np.array(batch[b"labels"]))


def test_cifar_python2_pickles(tmp_path: Path) -> None:
    """The real CIFAR batches: Python 2 pickles of numpy 1.x arrays, str keys."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5]
    (tmp_path / "data_batch_1").write_bytes(py2_cifar_pickle(data, labels))
    splits = load_dataset(tmp_path, val_fraction=0.4)
    assert splits.classes == tuple("0123456789")[:6]
    assert_pixels_match(splits, data.reshape(-1, 3, 32, 32), np.array(labels))


def test_cifar100(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    batch, data = cifar_batch(10, seed=5, labels_key="fine_labels")
    batch[b"coarse_labels"] = [0] * 10
    write_pickle(folder / "train", batch)
    write_pickle(folder / "test", cifar_batch(3, seed=6, labels_key="fine_labels")[0])
    names = [f"class{i:02d}".encode() for i in range(100)]
    write_pickle(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": []})
    splits = load_dataset(folder, format="cifar", val_fraction=0.2)
    assert (len(splits.train), len(splits.val), splits.name) == (8, 2, "cifar100")
    assert splits.num_classes == 100 and splits.classes[99] == "class99"
    assert_pixels_match(splits, data.reshape(-1, 3, 32, 32), np.array(batch[b"fine_labels"]))


class RunsCommand:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_cifar_pickle_with_disallowed_global_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch, _ = cifar_batch(4, seed=0)
    batch[b"batch_label"] = RunsCommand(f"touch {marker}")
    path = write_pickle(tmp_path / "data_batch_1", batch)
    with pytest.raises(DataError, match=r"asks for (posix|nt|os)\.system") as info:
        load_dataset(tmp_path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_cifar_pickle_with_builtin_eval_is_refused(tmp_path: Path) -> None:
    class Evaluates:
        def __reduce__(self) -> tuple:
            return (eval, ("1 + 1",))

    write_pickle(tmp_path / "test_batch", {b"data": Evaluates(), b"labels": []})
    with pytest.raises(DataError, match=r"asks for builtins\.eval"):
        load_dataset(tmp_path)


def test_cifar_pickle_may_encode_bytes_only_as_latin1(tmp_path: Path) -> None:
    class Rot13:
        def __reduce__(self) -> tuple:
            return (codecs.encode, ("text", "rot13"))  # pickled as _codecs.encode

    write_pickle(tmp_path / "test_batch", {b"data": Rot13(), b"labels": []})
    with pytest.raises(DataError, match=r"not a readable pickle.*rot13"):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([1, 2, 3], "a pickled dict expected, got list"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, r"no \['labels'\] entry"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "one integer label per"),
    ],
)
def test_cifar_bad_batch(tmp_path: Path, content: object, match: str) -> None:
    path = write_pickle(tmp_path / "data_batch_1", content)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(tmp_path)
    assert str(path) in str(info.value) and "CIFAR-10" in str(info.value)


def test_cifar_truncated_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path, batches=1, n=4)
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="not a readable pickle") as info:
        load_dataset(tmp_path)
    assert str(path) in str(info.value)


# -- ImageFolder ---------------------------------------------------------------------------


COLORS = {"dog": (200, 10, 10), "ant": (10, 200, 10), "cat": (10, 10, 200)}


def write_image_folder(root: Path) -> None:
    # Created out of order, of different sizes and formats.
    for i, (name, color) in enumerate(COLORS.items()):
        write_png(root / name / "a.png", color, (12 + i, 9))
        write_png(root / name / "b.PNG", color, (7, 7))
    write_png(root / "cat" / "c.bmp", COLORS["cat"], (40, 20))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()


def test_imagefolder_loads_sorted_classes_resized(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    splits = load_dataset(tmp_path, image_size=8, val_fraction=0.25)
    assert splits.classes == ("ant", "cat", "dog")
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (3, 3, 8)
    assert len(splits.train) + len(splits.val) == 7
    assert splits.train[0][0].shape == (3, 8, 8)
    pixels = torch.cat([stored_pixels(splits, "train"), stored_pixels(splits, "val")])
    labels = torch.cat([splits.train.labels, splits.val.labels])
    for image, label in zip(pixels, labels):
        color = torch.tensor(COLORS[splits.classes[int(label)]], dtype=torch.float32)
        assert torch.equal(image, color.view(3, 1, 1).expand(3, 8, 8))


def test_imagefolder_grayscale_default_size_and_train_subfolder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train")
    splits = load_dataset(tmp_path, in_channels=1)
    assert (splits.in_channels, splits.image_size) == (1, 32)
    assert splits.name == tmp_path.name


def test_imagefolder_empty_class(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    (tmp_path / "bee").mkdir()
    with pytest.raises(DataError, match="holds no image files") as info:
        load_dataset(tmp_path)
    assert str(tmp_path / "bee") in str(info.value)


def test_imagefolder_corrupt_image(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    bad = tmp_path / "dog" / "z.jpg"
    bad.write_bytes(b"not a jpeg at all")
    # Statistics come from a sample of images, which here is all of them: the bad one is
    # met while loading. (In a large folder it is met when its item is read: see
    # test_loader.py.)
    with pytest.raises(DataError, match="cannot read this image") as info:
        load_dataset(tmp_path, format="imagefolder")
    assert str(bad) in str(info.value)


def test_imagefolder_without_images(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        load_dataset(tmp_path, format="imagefolder")
