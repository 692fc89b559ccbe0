"""Fashion-MNIST from disk: the original gzip IDX files or the report's CSV layout, validated.

Where the files are looked for, in order: `data_dir` (or env FASHION_MNIST_DIR), Debian's package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist), then torchvision's download into the
user's cache (networked machines only). Images come back as uint8 (N, 28, 28), labels as int64.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import overrides

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path.home() / ".cache" / "fashion-mnist"
SPLITS = {"train": 60_000, "test": 10_000}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CSV_FILES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: 0x0803 = unsigned bytes, 3 dims; 0x0801 = 1 dim
SIDE = 28
# Every command (model.train, search.run, search.retrain) draws its validation split and subset with
# this seed: a config is judged on the same images whichever command trains it.
SPLIT_SEED = 0


class DataError(ValueError):
    """A missing, truncated or corrupt data file; the message names the file and what was expected."""


@dataclass(frozen=True)
class Split:
    """Training and validation arrays for one run: the test set is not here on purpose."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


def load(split: str = "train", data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of the "train" or "test" split."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose train or test")
    folder = find(data_dir)
    csv = folder / CSV_FILES[split]
    if _idx_path(folder, IDX_FILES[split][0]) is None and csv.exists():
        images, labels = read_csv(csv)
    else:
        images = read_idx(_require(folder, IDX_FILES[split][0]), IMAGES_MAGIC)
        labels = read_idx(_require(folder, IDX_FILES[split][1]), LABELS_MAGIC)
        if len(images) != len(labels):
            raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels; expected the same count")
    if len(images) != SPLITS[split]:
        raise DataError(f"{folder}: {len(images)} {split} images; expected {SPLITS[split]:,} (a complete Fashion-MNIST)")
    return images, labels


def find(data_dir: str | os.PathLike | None = None) -> Path:
    given = data_dir or os.environ.get("FASHION_MNIST_DIR")
    if given:
        folder = Path(given).expanduser()  # a quoted ~ too, as in a script
        if not folder.is_dir():
            named = f"data_dir={data_dir}" if data_dir else f"FASHION_MNIST_DIR={given}"
            what = "is a file, not a folder" if folder.exists() else "no such folder"
            raise DataError(f"{named}: {what}; expected a folder with the Fashion-MNIST IDX (.gz) or CSV files")
        return folder
    if _has_data(DEBIAN_DIR):
        return DEBIAN_DIR
    if not _has_data(CACHE_DIR):
        _download(CACHE_DIR)
    return CACHE_DIR


def _has_data(folder: Path) -> bool:
    return all(_idx_path(folder, name) for pair in IDX_FILES.values() for name in pair)


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            return candidate
    return None


def _require(folder: Path, name: str) -> Path:
    path = _idx_path(folder, name)
    if path is None:
        raise DataError(f"{folder / (name + '.gz')}: missing; expected the Fashion-MNIST file (gzip or plain IDX) there")
    return path


def _download(folder: Path) -> None:
    """torchvision's download (needs the internet; never used by the tests)."""
    from torchvision.datasets import FashionMNIST

    FashionMNIST(str(folder.parent / "torchvision"), download=True)
    raw = folder.parent / "torchvision" / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for pair in IDX_FILES.values():
        for name in pair:
            os.replace(raw / f"{name}.gz", folder / f"{name}.gz")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """A validated IDX file: images (N, 28, 28) uint8 or labels (N,) int64 in 0..9."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a gzip body that does not decompress
        raise DataError(f"{path}: cannot be read ({e}); expected a gzip-compressed IDX file") from None
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    header = 16 if magic == IMAGES_MAGIC else 8
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path}: magic number {found}, expected {magic} (an IDX {kind} file)")
    count = int.from_bytes(raw[4:8], "big")
    shape = (count, SIDE, SIDE) if magic == IMAGES_MAGIC else (count,)
    if magic == IMAGES_MAGIC:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (SIDE, SIDE):
            raise DataError(f"{path}: images are {rows}x{cols}; expected {SIDE}x{SIDE}")
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes for {count} {kind}; expected {expected} (truncated or corrupt)")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if magic == LABELS_MAGIC:
        _check_labels(path, data)
        return data.astype(np.int64)
    return data.copy()


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The report's CSV layout: header label,pixel1,...,pixel784, one image per row."""
    import pandas as pd

    expected = ["label"] + [f"pixel{i}" for i in range(1, SIDE * SIDE + 1)]
    try:
        frame = pd.read_csv(path, dtype=np.int64)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e}); expected integer CSV with header label,pixel1,...,pixel784") from None
    if list(frame.columns) != expected:
        raise DataError(f"{path}: header starts {list(frame.columns)[:3]}; expected label,pixel1,...,pixel784")
    values = frame.to_numpy()
    pixels = values[:, 1:]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(f"{path}: pixel values outside 0..255")
    _check_labels(path, values[:, 0])
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE), values[:, 0].astype(np.int64)


def _check_labels(path: Path, labels: np.ndarray) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels range {labels.min()}..{labels.max()}; expected 0..{len(CLASSES) - 1}")


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n samples with class proportions kept (largest remainders), in random order."""
    if not 0 < n <= len(labels):
        raise ValueError(f"subset/val_size={n}: must be between 1 and {len(labels)}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    take[np.argsort(take - exact)[: n - take.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return rng.permutation(np.concatenate(picked))


def split(
    images: np.ndarray, labels: np.ndarray, val_size: int = 6000, subset: int | None = None, seed: int = SPLIT_SEED
) -> Split:
    """A deterministic stratified validation split (val_size images), then an optional stratified
    `subset` of the remaining training images for quick runs."""
    val = stratified_sample(labels, val_size, seed)
    rest = np.setdiff1d(np.arange(len(labels)), val)
    if subset is not None:
        rest = rest[stratified_sample(labels[rest], subset, seed + 1)]
    else:
        rest = np.random.default_rng(seed).permutation(rest)
    return Split(images[rest], labels[rest], images[val], labels[val])


def parse_subset(text: str) -> int | None:
    """`subset=` as every command takes it: a number of training images, or all (None)."""
    if text.strip().lower() == "all":
        return None
    return overrides.parse_int("subset", text, 1, SPLITS["train"])


def check_sizes(val_size: int, subset: int | None, batch_size: int) -> int:
    """The number of training images that `val_size` and `subset` leave of the 60,000; ValueError
    when they do not fit or leave less than one batch of `batch_size` (before anything loads)."""
    total = SPLITS["train"]
    if not 0 <= val_size < total:
        raise ValueError(f"val_size={val_size}: must lie between 0 and {total - 1:,} (of {total:,} training images)")
    left = total - val_size
    if subset is not None and subset < 1:
        raise ValueError(f"subset={subset}: must be at least 1 (or all)")
    if subset is not None and subset > left:
        # Either key may be the one to change (a budget's subset stays when only val_size is given): name
        # both, but not a subset too small for one batch, which the next check would refuse.
        fixes = [f"subset={left} or less"] if left >= batch_size else []
        fixes += [f"val_size={total - max(subset, batch_size)} or less"] if max(subset, batch_size) < total else []
        raise ValueError(f"subset={subset} with val_size={val_size}: the {total:,} training images less {val_size:,} for "
                         f"validation leave {left:,}; give {', or '.join(fixes) or 'a smaller subset and val_size'}")
    images = left if subset is None else subset
    if batch_size > images:
        given = f"subset={'all' if subset is None else subset}" + (f", val_size={val_size}" if val_size else "")
        raise ValueError(
            f"batch_size={batch_size} exceeds the {images:,} training {'image' if images == 1 else 'images'} ({given}): "
            "not one full batch an epoch; give a larger subset or a smaller batch_size"
        )
    return images


def load_split(data_dir: str | os.PathLike | None, val_size: int, subset: int | None) -> Split:
    """The training file split as every command splits it (SPLIT_SEED); val_size=0: no validation set."""
    images, labels = load("train", data_dir)
    if val_size == 0:
        keep = stratified_sample(labels, subset, SPLIT_SEED) if subset is not None else np.arange(len(labels))
        return Split(images[keep], labels[keep], images[:0], labels[:0])
    return split(images, labels, val_size, subset)
