"""`python -m search.run` for real: a local Ray, Optuna, the real data subset, Parquet out.

Each search runs in a subprocess, as a user runs it, so that Ctrl-C and SIGKILL can be sent to it.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from results.schema import EPOCHS, TRIALS, read_table
from search import run
from search.engine import INTERRUPTED

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
# The seed network on 600 training images: about a second an epoch here.
SMALL = ["space=augmentation", "subset=600", "val_size=300", "concurrency=2"]


def search(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.run", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )


def report(experiment: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = read_table(experiment / "report" / "trials.parquet", TRIALS)
    epochs = read_table(experiment / "report" / "epochs.parquet", EPOCHS)
    return trials, epochs


def optuna_trials(experiment: Path) -> list:
    """The searcher's Optuna study as Tune saved it (OptunaSearch pickles its attributes)."""
    (path,) = glob.glob(str(experiment / "searcher-state-*.pkl"))
    with open(path, "rb") as f:
        state = pickle.load(f)
    return state["_ot_study"].get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    # eta=4 keeps only the top quarter at the epoch-1 rung, so some trials are certainly stopped.
    storage = tmp_path_factory.mktemp("runs")
    done = search(*SMALL, "trials=6", "max_epochs=2", "grace=1", "eta=4", f"storage={storage}", "name=smoke")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "top 5" in done.stdout and "report" in done.stdout
    return storage / "smoke"


def test_smoke_search_writes_a_valid_report(smoke):
    trials, epochs = report(smoke)
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (trials["params"] == 786_890).all()  # the augmentation space keeps the seed network
    assert trials["lr"].nunique() == 6  # TPE proposed six learning rates
    merged = epochs.groupby("trial_id")["val_acc"].max()
    assert (trials.set_index("trial_id")["best_val_acc"] == merged).all()
    best = json.loads((smoke / "report" / "best.json").read_text())
    assert best["metrics"]["val_acc"] == trials[trials["status"] == "completed"]["best_val_acc"].max()


def test_optuna_is_told_the_truth_about_stopped_trials(smoke):
    trials, epochs = report(smoke)
    assert (trials["status"] == "pruned").any(), "eta=4 must stop some trial at epoch 1"
    by_lr = {round(t.params["lr"], 12): t for t in optuna_trials(smoke)}
    for row in trials.itertuples():
        ot = by_lr[round(row.lr, 12)]
        curve = epochs[epochs["trial_id"] == row.trial_id].sort_values("epoch")
        # Every epoch reached Optuna, the last one included (stock Ray drops the stopping result).
        assert sorted(ot.intermediate_values) == curve["epoch"].tolist()
        assert list(ot.intermediate_values.values()) == pytest.approx(curve["val_acc"].tolist())
        expected = TrialState.PRUNED if row.status == "pruned" else TrialState.COMPLETE
        assert ot.state == expected, (row.trial_id, row.status, ot.state)


def _wait_for_epochs(experiment: Path, count: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = sum(len(Path(p).read_text().splitlines()) for p in glob.glob(str(experiment / "trial_*" / "result.json")))
        if lines >= count:
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} epochs reported in {timeout} s")


def test_interrupt_kill_and_resume_lose_and_duplicate_nothing(tmp_path):
    experiment = tmp_path / "resumable"
    args = [*SMALL, "trials=6", "max_epochs=3", "grace=1", "eta=2", f"storage={tmp_path}", "name=resumable"]
    command = [sys.executable, "-m", "search.run"]

    # 1. Ctrl-C: a clean stop that says how to resume, with a non-zero exit.
    proc = subprocess.Popen([*command, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _wait_for_epochs(experiment, 2, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED, err[-3000:]
    assert "resume=true" in out

    # 2. Resume, then SIGKILL the whole process group (driver, Ray and trials) mid-run.
    resume = [*command, "name=resumable", f"storage={tmp_path}", "resume=true"]
    proc = subprocess.Popen(resume, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    before = sum(len(Path(p).read_text().splitlines()) for p in glob.glob(str(experiment / "trial_*" / "result.json")))
    _wait_for_epochs(experiment, before + 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()

    # 3. Resume to the end.
    done = subprocess.run(resume, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trials, epochs = report(experiment)
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    last_epoch = epochs.groupby("trial_id")["epoch"].max()
    assert last_epoch.to_dict() == trials.set_index("trial_id")["epochs_run"].to_dict()
    # The rungs were carried across both restores: every trial that reached a milestone is recorded
    # there, those from before the interruptions too (Ray's own restore starts them empty).
    rungs = json.loads((experiment / "rungs.json").read_text())
    for rung in rungs:
        reached = set(epochs.loc[epochs["epoch"] == rung["milestone"], "trial_id"])
        assert reached == set(rung["recorded"]), rung["milestone"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["space=nope"], "unknown space 'nope'; choose one of seed, baseline"),
        (["space=augmentation", "budget=huge"], "unknown budget 'huge'; choose one of smoke, standard"),
        (["space=augmentation", "colour=red"], "unknown key 'colour'; valid keys: space, budget"),
        (["space=augmentation", "trials=many"], "trials='many': expected an integer"),
        (["space=augmentation", "grace=9"], "grace=9 exceeds max_epochs=3"),
        (["space=augmentation", "gpus_per_trial=1.5"], "above 1 it must be a whole number"),
        (["space=augmentation", "address=auto"], "multi-node Tune needs storage every node can reach"),
        (["space=augmentation", "address=not an address"], "address='not an address'"),
        (["resume=true"], "resume=true needs name=NAME"),
        (["space=augmentation", "name=x", "resume=true"], "drop space"),
        (["name=ghost", "resume=true"], "nothing to resume"),
        (["space=augmentation", "data_dir=/nonexistent"], "no such folder"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_on_disk(tmp_path, capsys, args, message):
    storage = tmp_path / "runs"
    assert run.main([*args, f"storage={storage}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not storage.exists()


def test_an_existing_search_is_not_overwritten(smoke, capsys):
    assert run.main(["space=augmentation", f"storage={smoke.parent}", "name=smoke"]) == 2
    assert "exists: add resume=true" in capsys.readouterr().err


def test_gpus_on_a_machine_without_them_are_refused_before_anything_is_written(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    storage = tmp_path / "runs"
    assert run.main(["space=augmentation", "gpus_per_trial=0.25", f"storage={storage}"]) == 2
    assert "has 0 GPUs" in capsys.readouterr().err
    assert not storage.exists()
