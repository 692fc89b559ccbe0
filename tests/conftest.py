"""Shared fixtures: the real Fashion-MNIST files (Debian's package or FASHION_MNIST_DIR), loaded once.

Without the data, its tests skip on a developer's machine but fail where the environment variable
CI is set (as CI services set it): a CI run that skipped them would pass without testing the data.
"""

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
        missing = "Fashion-MNIST not installed: `make data` (Debian's dataset-fashion-mnist) or set FASHION_MNIST_DIR"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI is set, so the data tests must run")
        pytest.skip(missing)
    return folder


@pytest.fixture(scope="session")
def train_set(fmnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return data.load("train", data_dir=fmnist_dir)


@pytest.fixture(scope="session")
def test_set(fmnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return data.load("test", data_dir=fmnist_dir)
