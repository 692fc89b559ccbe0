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


def test_orchestration_accounts_for_every_slot_second_of_made_up_trials():
    """benchmarks/orchestration.py's figures from worker logs: two actors, three trials, fit() from 0 to 10 s."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from orchestration import Trial, summary
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    trials = [
        Trial(pid=1, born=0.5, start=2.0, sleeps=[(2.0, 3.0), (3.1, 4.1)]),  # actor 1, then ...
        Trial(pid=2, born=0.6, start=3.0, sleeps=[(3.0, 4.0)]),
        Trial(pid=1, born=0.5, start=4.3, sleeps=[(4.3, 5.3), (5.4, 6.4), (6.5, 7.5)]),  # ... its next trial
    ]
    figures = summary(trials, start=0.0, end=10.0, slots=2)
    assert figures["slept"] == pytest.approx(6.0) and figures["efficiency"] == pytest.approx(6.0 / 20)
    assert figures["steady"] == pytest.approx(6.0 / ((10 - 2.0) + (10 - 3.0)))  # from each slot's first trial
    assert figures["start"] == pytest.approx(3.0)  # the second slot's first trial began at 3 s
    assert figures["born"] == pytest.approx(0.6) and figures["to_first"] == pytest.approx((1.5 + 2.4) / 2)
    assert figures["trial_gap"] == pytest.approx(0.2)  # actor 1: its first trial's last sleep to its next trial
    assert figures["epoch_gap"] == pytest.approx(0.1) and figures["tail"] == pytest.approx(2.5)
    assert (figures["trials"], figures["epochs"], figures["actors"]) == (3, 6, 2)
