"""The benchmarks' own command-line contracts (their measurements are not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_the_warm_start_comparison_hands_the_earlier_searchs_trials_to_the_warm_one():
    """benchmarks/warm_start.py on the committed record, two seeds of small searches: every
    finished trial of the earlier search reaches the warm search's study, told as it ended."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import search_efficiency
        import warm_start
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    search_efficiency._setup((str(REPO / "benchmarks" / "records" / "full-cpu-12ep-2026-11-26"),))
    options = warm_start.argparse.Namespace(concurrency=2, grace=1, eta=3)
    earlier = warm_start._search(1001, 6, options)
    trials, epochs = warm_start.tables(earlier)
    assert sorted(trials["trial_id"]) == sorted(e.trial_id for e in earlier.ended) and len(trials) == 6
    record = search_efficiency._WORKER["record"]
    taken, note = warm_start.warm.from_tables(trials, epochs, search_efficiency._WORKER["space"], record.max_epochs, "x")
    completed = sum(e.status == "completed" for e in earlier.ended)
    assert len(taken) == 6 and sum(t.state.name == "COMPLETE" for t in taken) == completed, note
    rows = [warm_start.one_seed((seed, warm_start.argparse.Namespace(earlier=6, trials=6, **vars(options))))
            for seed in (1, 2)]
    for row in rows:  # anytime curves: device-seconds rise, the best named never falls below 0
        for seconds, best in (row["cold"], row["warm"]):
            assert len(seconds) == 6 and (np.diff(seconds) >= 0).all() and (best > 0).all()
    summary = warm_start.summarize(rows, resamples=50)
    assert set(summary) == set(warm_start.LABELS) and summary["target"].value == np.mean(
        [row["cold"][1][-1] for row in rows])  # the IQM of two seeds is their mean
