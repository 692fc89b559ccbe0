"""Shared fixtures: the real Fashion-MNIST files (Debian's package or FASHION_MNIST_DIR), loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model import data


def _data_dir() -> Path | None:
    given = os.environ.get("FASHION_MNIST_DIR")
    if given:
        return Path(given)
    if all((data.DEBIAN_DIR / f"{name}.gz").exists() for pair in data.IDX_FILES.values() for name in pair):
        return data.DEBIAN_DIR
    return None


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    folder = _data_dir()
    if folder is None:
        pytest.skip("Fashion-MNIST not installed: `make data` (Debian's dataset-fashion-mnist) or set FASHION_MNIST_DIR")
    return folder


@pytest.fixture(scope="session")
def train_set(fmnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return data.load("train", data_dir=fmnist_dir)


@pytest.fixture(scope="session")
def test_set(fmnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return data.load("test", data_dir=fmnist_dir)
