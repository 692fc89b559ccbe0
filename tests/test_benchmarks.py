"""The benchmarks' own command-line contracts (their measurements are not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the headline would run")
def test_the_headline_without_a_gpu_says_so_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "headline.py"), "--quick", "--storage", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: the headline benchmark needs a CUDA GPU, and none is visible here"
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
