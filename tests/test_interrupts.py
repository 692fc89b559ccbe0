"""Stopping a search while its trials train and resuming it, as a user's terminal, `timeout` or a
crash does: Ctrl-C twice, SIGKILL, a move to other storage, SIGTERM as `kill` and `timeout` send
it, and a trial killed between its checkpoints. Each search runs in a subprocess from a temporary
working directory with the default relative storage (runs/), and every command it prints is run
back as printed. Signals at a search's edges (its imports, its start, its end, a record) are in
tests/test_interrupts_at_the_edges.py, so that pytest-xdist can run the two files side by side.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.overrides import INTERRUPTED
from search.runtime.lock import LOCK_FILE
from test_search_run import ENV, SMALL, report, search, start


def _epochs_written(experiment: Path) -> int:
    return sum(len(Path(p).read_text().splitlines()) for p in glob.glob(str(experiment / "trial_*" / "result.json")))


def test_ctrl_c_twice_then_the_printed_command_then_sigkill_and_a_move_lose_and_duplicate_nothing(tmp_path):
    from conftest import HOLD_TRIALS, wait_until

    experiment = tmp_path / "runs" / "resumable"
    # Every trial is held before its second epoch until the gate opens (after the SIGKILL): no
    # trial can end past its first rung, so the search is certainly running when each signal comes.
    gate = tmp_path / "gate"
    gate.mkdir()
    env = _with_site(tmp_path, HOLD_TRIALS, HOLD_GATE=str(gate), HOLD_EPOCH="1")

    # 1. Ctrl-C, and another before the search has stopped (as a terminal sends it: to the whole
    #    process group): exit 130, no traceback, and the command that resumes it.
    proc = start(*SMALL, "trials=6", "max_epochs=3", "grace=1", "eta=2", "name=resumable", cwd=tmp_path, env=env)
    wait_until(lambda: _epochs_written(experiment) >= 2 and any(gate.glob("held-*")), proc, "2 epochs and a held trial")
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED, err[-3000:]
    assert "Traceback" not in err and "Tuner.restore" not in out + err, err[-3000:]
    printed = next(line for line in out.splitlines() if "resume with" in line).split("resume with", 1)[1].strip()
    assert printed == "python -m search.run name=resumable resume=true"

    # 2. The printed command, exactly; SIGKILL the whole process group (driver, Ray, trials) once a
    #    resumed trial stands at the gate and Tune has snapshotted the experiment since.
    command = shlex.split(printed)
    assert command[:3] == ["python", "-m", "search.run"]
    for held in gate.glob("held-*"):
        held.unlink()
    proc = start(*command[3:], cwd=tmp_path, env=env)

    def resumed_and_snapshotted() -> bool:
        at_gate = list(gate.glob("held-*"))
        snapshots = sorted(experiment.glob("experiment_state-*.json"))
        return bool(at_gate and snapshots) and snapshots[-1].stat().st_mtime > max(h.stat().st_mtime for h in at_gate) + 1

    wait_until(resumed_and_snapshotted, proc, "a resumed trial at the gate and a snapshot since")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert (experiment / LOCK_FILE).exists()  # SIGKILL runs no cleanup: the next run takes it over
    (gate / "open").touch()

    # 3. The experiment moves to another storage folder; resumed there, it finishes there.
    shutil.move(tmp_path / "runs", tmp_path / "moved")
    done = search("name=resumable", "storage=moved", "resume=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "took over the lock" in done.stderr
    experiment = tmp_path / "moved" / "resumable"
    assert not (tmp_path / "runs").exists() and not (experiment / LOCK_FILE).exists()
    trials, epochs = report(experiment)
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    last_epoch = epochs.groupby("trial_id")["epoch"].max()
    assert last_epoch.to_dict() == trials.set_index("trial_id")["epochs_run"].to_dict()
    # The rungs were carried across both restores and written where the experiment is now: every
    # trial that reached a milestone is recorded there, those from before the interruptions too.
    rungs = json.loads((experiment / "rungs.json").read_text())
    for milestone in {rung["milestone"] for rung in rungs}:
        reached = set(epochs.loc[epochs["epoch"] == milestone, "trial_id"])
        recorded = {t for rung in rungs if rung["milestone"] == milestone for t in rung["recorded"]}
        assert reached == recorded, milestone

def _with_site(tmp_path: Path, code: str, **env: str) -> dict:
    from conftest import with_site

    return with_site(tmp_path, code, ENV, **env)


@pytest.mark.parametrize("to_group", [False, True], ids=["kill", "timeout"])
def test_sigterm_stops_a_search_as_ctrl_c_does_with_the_resume_command_and_exit_143(tmp_path, to_group):
    """What kill sends (to the driver alone) and timeout sends (to its whole process group, Ray's
    processes included unless they have a group of their own): Tune stops the trials and saves the
    experiment, the report ends with the command that resumes it, the lock is released."""
    from conftest import HOLD_TRIALS

    gate = tmp_path / "gate"
    gate.mkdir()
    env = _with_site(tmp_path, HOLD_TRIALS, HOLD_GATE=str(gate), HOLD_EPOCH="1")
    # One trial: what Tune does on SIGTERM does not depend on how many run (a second costs its own process).
    args = [*SMALL, "trials=1", "max_epochs=2", "grace=2", "eta=2", "name=termed"]
    # Under timeout (which leads its own group, as it makes one), signalled as its group by hand.
    wrapper = ["timeout", "--preserve-status", "3600"] if to_group else []
    proc = subprocess.Popen([*wrapper, sys.executable, "-m", "search.run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300  # a hang's deadline, not a margin to meet
    while not any(gate.glob("held-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    if to_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM received" not in err and "Traceback" not in err and "Failed to connect to GCS" not in err, err[-3000:]
    printed = next(line for line in out.splitlines() if "resume with" in line).split("resume with", 1)[1].strip()
    assert printed == "python -m search.run name=termed resume=true"
    assert not (tmp_path / "runs" / "termed" / LOCK_FILE).exists()


def test_a_trial_killed_between_checkpoints_runs_its_lost_epochs_again_on_resume(tmp_path):
    """checkpoint_every: a crash costs each running trial the work since its last checkpoint, here
    all of it (no checkpoint within an hour): resumed, the trial starts again from epoch 1, and ends
    with the very results an uninterrupted run gives. One trial: each running trial's lost epochs
    are its own (a second would cost a process of its own in both runs)."""
    from conftest import HOLD_TRIALS, wait_until, wait_until_held_and_snapshotted

    gate = tmp_path / "gate"
    gate.mkdir()
    env = _with_site(tmp_path, HOLD_TRIALS, HOLD_GATE=str(gate), HOLD_EPOCH="2")
    experiment = tmp_path / "runs" / "lost"
    # grace = max_epochs: the trial is not stopped early, so it reaches the gate.
    args = [*SMALL, "trials=1", "max_epochs=3", "grace=3", "eta=2", "name=lost", "checkpoint_every=3600"]
    proc = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # The trial held before epoch 3, its epochs 1 and 2 reported, and an experiment snapshot
        # taken since (Tune takes one at least every 10 s): what a resume starts from.
        wait_until_held_and_snapshotted(gate, experiment, proc, held=1)
        # Tune copies the trial's result.json to the storage in the background, the snapshot not
        # necessarily last: its epochs 1 and 2, once there.
        wait_until(lambda: _epochs(_copied_rows(experiment)) == [[1, 2]], proc,
                   "the trial's epochs 1 and 2 in the storage", timeout=120)
        before = _result_rows(experiment)
        assert not list(experiment.glob("trial_*/checkpoint_*"))  # killed between checkpoints: none yet
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    (gate / "open").touch()

    done = search("name=lost", "resume=true", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _result_rows(experiment)
    assert after.keys() == before.keys()
    for trial_id, rows in after.items():
        # From epoch 1 again, in the resumed search's processes (Tune starts a trial's result.json
        # over when the trial starts over), to the same results for the same epochs.
        assert [row["training_iteration"] for row in rows] == [1, 2, 3]
        assert {row["pid"] for row in rows}.isdisjoint(row["pid"] for row in before[trial_id])
        assert [row["val_acc"] for row in rows[:2]] == [row["val_acc"] for row in before[trial_id]]
    trials, epochs = report(experiment)
    assert trials["status"].tolist() == ["completed"] and not epochs.duplicated(["trial_id", "epoch"]).any()


def _epochs(rows_by_trial: dict[str, list[dict]]) -> list[list[int]]:
    return [[row["training_iteration"] for row in rows] for rows in rows_by_trial.values()]


def _copied_rows(experiment: Path) -> dict[str, list[dict]]:
    """_result_rows, or {} while a copy is half-written."""
    try:
        return _result_rows(experiment)
    except ValueError:
        return {}


def _result_rows(experiment: Path) -> dict[str, list[dict]]:
    """trial id -> the rows of its result.json, in the order Tune wrote them."""
    return {Path(path).parent.name: [json.loads(line) for line in Path(path).read_text().splitlines()]
            for path in sorted(glob.glob(str(experiment / "trial_*" / "result.json")))}
