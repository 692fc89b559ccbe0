"""Fashion-MNIST from disk: the real Debian files, the report's CSV layout, the stratified split,
and clear errors for missing, truncated and corrupt files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import data
from model.data import DataError

IMAGES, LABELS = data.IDX_FILES["test"]


def test_real_training_set(train_set):
    images, labels = train_set
    assert images.shape == (60_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60_000,) and labels.dtype == np.int64
    assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, 6_000))
    assert images.min() == 0 and images.max() == 255
    assert images.flags.writeable  # a copy, not a view of the decompressed bytes


def test_real_test_set(test_set):
    images, labels = test_set
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.int64
    assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, 1_000))


def _write_csv(path: Path, images: np.ndarray, labels: np.ndarray, header: str | None = None) -> None:
    header = header or "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    rows = np.column_stack([labels, images.reshape(len(images), -1)]).tolist()
    path.write_text("\n".join([header, *(",".join(map(str, row)) for row in rows)]) + "\n")


def test_csv_in_the_reports_layout_reads_back_identical(test_set, tmp_path):
    images, labels = test_set
    _write_csv(tmp_path / data.CSV_FILES["test"], images, labels)
    got_images, got_labels = data.load("test", data_dir=tmp_path)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_read_csv_of_a_few_images(train_set, tmp_path):
    images, labels = train_set[0][:300], train_set[1][:300]
    _write_csv(tmp_path / "few.csv", images, labels)
    got_images, got_labels = data.read_csv(tmp_path / "few.csv")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_incomplete_csv_is_rejected(train_set, tmp_path):
    _write_csv(tmp_path / data.CSV_FILES["test"], train_set[0][:300], train_set[1][:300])
    with pytest.raises(DataError, match="300 test images; expected 10,000"):
        data.load("test", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda img, lab, h: (img, lab, "label,px1," + h.split(",", 2)[2]), "header"),
        (lambda img, lab, h: (img.astype(np.int64) + 1, lab, h), "pixel values outside 0..255"),
        (lambda img, lab, h: (img, lab + 10, h), "labels range"),
    ],
    ids=["bad-header", "pixel-256", "label-10"],
)
def test_bad_csv_names_the_file(train_set, tmp_path, edit, fragment):
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    images = train_set[0][:20].copy()
    images[0, 0, 0] = 255
    images, labels, header = edit(images, train_set[1][:20], header)
    path = tmp_path / "bad.csv"
    _write_csv(path, images, labels, header)
    with pytest.raises(DataError) as info:
        data.read_csv(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def _index_split(labels: np.ndarray, **kwargs) -> data.Split:
    """`split` of the indices themselves, so the Split holds which images went where."""
    return data.split(np.arange(len(labels)), labels, **kwargs)


def test_split_is_deterministic_stratified_and_disjoint(train_set):
    labels = train_set[1]
    a = _index_split(labels, val_size=6000, seed=0)
    b = _index_split(labels, val_size=6000, seed=0)
    assert np.array_equal(a.val_images, b.val_images) and np.array_equal(a.train_images, b.train_images)
    other = _index_split(labels, val_size=6000, seed=1)
    assert not np.array_equal(np.sort(a.val_images), np.sort(other.val_images))

    assert len(a.val_images) == 6000 and len(a.train_images) == 54_000
    assert np.array_equal(np.bincount(labels[a.val_images], minlength=10), np.full(10, 600))
    assert np.intersect1d(a.val_images, a.train_images).size == 0
    assert np.array_equal(np.sort(np.concatenate([a.val_images, a.train_images])), np.arange(60_000))
    assert np.array_equal(a.val_labels, labels[a.val_images]) and np.array_equal(a.train_labels, labels[a.train_images])
    # Shuffled, not in file order (batches are drawn by the trainer, but a file-ordered split would be suspicious).
    assert not np.array_equal(a.train_images, np.sort(a.train_images))


def test_subset_is_stratified_and_kept_out_of_validation(train_set):
    labels = train_set[1]
    s = _index_split(labels, val_size=2000, subset=1000, seed=3)
    assert np.array_equal(np.bincount(labels[s.train_images], minlength=10), np.full(10, 100))
    assert len(np.unique(s.train_images)) == 1000
    assert np.intersect1d(s.val_images, s.train_images).size == 0
    again = _index_split(labels, val_size=2000, subset=1000, seed=3)
    assert np.array_equal(s.train_images, again.train_images)


def test_split_carries_the_images_with_their_labels(train_set):
    images, labels = train_set
    s = data.split(images, labels, val_size=500, subset=500, seed=0)
    assert s.train_images.shape == (500, 28, 28) and s.val_images.shape == (500, 28, 28)
    idx = _index_split(labels, val_size=500, subset=500, seed=0)
    assert np.array_equal(s.train_images, images[idx.train_images])
    assert np.array_equal(s.val_labels, labels[idx.val_images])


def test_the_validation_split_depends_on_val_size_alone(train_set):
    images, labels = train_set
    whole = data.split(images, labels, val_size=500)
    small = data.split(images, labels, val_size=500, subset=600)
    assert data.split.__defaults__[-1] == data.SPLIT_SEED  # every command splits with this seed
    assert np.array_equal(whole.val_images, small.val_images) and np.array_equal(whole.val_labels, small.val_labels)
    assert len(small.train_images) == 600


@pytest.mark.parametrize(
    "val_size, subset, batch_size, message",
    [
        (60_000, None, 64, "val_size=60000: must lie between 0 and 59,999"),
        (6_000, 54_001, 64, "subset=54001 with val_size=6000: the 60,000 training images less 6,000 for validation "
                            "leave 54,000; give subset=54000 or less, or val_size=5999 or less"),
        # subset=1 would leave no batch of 64: only val_size is a way out
        (59_999, 3_000, 64, "subset=3000 with val_size=59999: .* leave 1; give val_size=57000 or less$"),
        (59_999, 30, 64, "subset=30 with val_size=59999: .* leave 1; give val_size=59936 or less$"),
        (59_999, 60_000, 64, "subset=60000 with val_size=59999: .* leave 1; give a smaller subset and val_size$"),
        (0, 0, 64, "subset=0: must be at least 1"),
        (300, 40, 64, "batch_size=64 exceeds the 40 training images"),
        (59_990, None, 64, "batch_size=64 exceeds the 10 training images"),
        (59_999, None, 64, r"batch_size=64 exceeds the 1 training image \(subset=all"),
    ],
)
def test_sizes_that_leave_no_batch_are_refused_before_loading(val_size, subset, batch_size, message):
    with pytest.raises(ValueError, match=message):
        data.check_sizes(val_size, subset, batch_size)
    assert data.check_sizes(6_000, None, 64) == 54_000 and data.check_sizes(0, 600, 64) == 600


def test_uneven_stratified_sample_is_within_one_per_class():
    labels = np.repeat(np.arange(10), [50, 50, 50, 50, 50, 50, 50, 50, 50, 41])
    idx = data.stratified_sample(labels, 123, seed=0)
    assert len(idx) == 123 == len(np.unique(idx))
    counts = np.bincount(labels[idx], minlength=10)
    exact = np.bincount(labels, minlength=10) * 123 / len(labels)
    assert (np.abs(counts - exact) < 1).all()
    for n in (0, len(labels) + 1):
        with pytest.raises(ValueError, match="must be between 1 and"):
            data.stratified_sample(labels, n, seed=0)


# --- missing, truncated and corrupt files -------------------------------------------------------


@pytest.fixture
def test_files(fmnist_dir: Path, tmp_path: Path) -> Path:
    """A folder with a copy of the real test-split gzip files."""
    for name in (IMAGES, LABELS):
        shutil.copy(fmnist_dir / f"{name}.gz", tmp_path / f"{name}.gz")
    return tmp_path


def test_copied_files_load(test_files, test_set):
    images, labels = data.load("test", data_dir=test_files)
    assert np.array_equal(images, test_set[0]) and np.array_equal(labels, test_set[1])


def _load_error(folder: Path) -> str:
    with pytest.raises(DataError) as info:
        data.load("test", data_dir=folder)
    return str(info.value)


@pytest.mark.parametrize("name", [IMAGES, LABELS])
def test_missing_file_is_named(test_files, name):
    (test_files / f"{name}.gz").unlink()
    message = _load_error(test_files)
    assert str(test_files / f"{name}.gz") in message and "missing" in message


@pytest.mark.parametrize("name", [IMAGES, LABELS])
def test_truncated_gzip_is_named(test_files, name):
    path = test_files / f"{name}.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    assert str(path) in _load_error(test_files)


@pytest.mark.parametrize("name", [IMAGES, LABELS])
def test_truncated_idx_content_is_named(test_files, name):
    path = test_files / f"{name}.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100], compresslevel=1))
    message = _load_error(test_files)
    assert str(path) in message and "truncated" in message


@pytest.mark.parametrize(("name", "magic"), [(IMAGES, data.IMAGES_MAGIC), (LABELS, data.LABELS_MAGIC)])
def test_bad_magic_is_named(test_files, name, magic):
    path = test_files / f"{name}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    message = _load_error(test_files)
    assert str(path) in message and "magic number" in message and str(magic) in message


def test_swapped_files_give_a_magic_error(test_files):
    images, labels = test_files / f"{IMAGES}.gz", test_files / f"{LABELS}.gz"
    images.rename(test_files / "tmp.gz")
    labels.rename(images)
    (test_files / "tmp.gz").rename(labels)
    assert "magic number" in _load_error(test_files)


@pytest.mark.parametrize("name", [IMAGES, LABELS])
def test_corrupt_gzip_body_is_named(test_files, name):
    path = test_files / f"{name}.gz"
    raw = bytearray(path.read_bytes())
    raw[1000:1400] = bytes(400)  # zeros inside the deflate stream: zlib.error, not an OSError
    path.write_bytes(bytes(raw))
    message = _load_error(test_files)
    assert str(path) in message and "cannot be read" in message


def test_gzip_with_a_wrong_checksum_is_named(test_files):
    path = test_files / f"{LABELS}.gz"
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path.write_bytes(bytes(raw))
    message = _load_error(test_files)
    assert str(path) in message and "CRC check failed" in message


def test_not_gzip_is_named(test_files):
    path = test_files / f"{LABELS}.gz"
    path.write_bytes(b"this is not a gzip file at all" * 10)
    message = _load_error(test_files)
    assert str(path) in message


def test_labels_out_of_range_are_rejected(test_files):
    path = test_files / f"{LABELS}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8] = 10
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    message = _load_error(test_files)
    assert str(path) in message and "labels range" in message


def test_plain_idx_files_load_too(test_files, test_set):
    for name in (IMAGES, LABELS):
        gz = test_files / f"{name}.gz"
        (test_files / name).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    images, labels = data.load("test", data_dir=test_files)
    assert np.array_equal(images, test_set[0]) and np.array_equal(labels, test_set[1])


def test_missing_data_dir_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        data.load("train", data_dir=missing)
    with pytest.raises(ValueError, match="choose train or test"):
        data.load("validation", data_dir=tmp_path)


def test_a_data_dir_is_found_through_a_quoted_home_and_named_by_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "fashion").mkdir()
    assert data.find("~/fashion") == tmp_path / "fashion"  # as a script that quotes it passes it
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match=r"^data_dir=~/a-file: is a file, not a folder; expected a folder"):
        data.find("~/a-file")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"^FASHION_MNIST_DIR=.*/missing: no such folder"):
        data.find()
