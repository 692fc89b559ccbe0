"""Signals at a command's edges, as a user's terminal or `timeout` sends them: while Ray and torch
import (and while a class is made there), before a search starts, before Tune's first snapshot,
while Ray stops after the trials and while the report is made; and Ctrl-C of a record. Each command
runs in a subprocess from a temporary working directory with the default relative storage (runs/),
and every command it prints is run back as printed. Searches stopped while their trials train are
in tests/test_interrupts.py.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import as_typed_in_a_terminal, patched_on_import

from model.overrides import INTERRUPTED
from search.runtime.lock import LOCK_FILE
from search.strategy import study
from test_interrupts import _with_site
from test_search_run import ENV, SMALL, report, search

ROOT = Path(__file__).resolve().parents[1]


# A sitecustomize that stops a command in its imports: importing $HOLD_MODULE writes the file
# $HOLD_GATE/importing and waits there (for the signal the test sends), so "while Ray and torch
# import" is a state the test waits for rather than a moment it tries to hit.
HOLD_IMPORT = """
import importlib.abc, os, sys, time

class HoldImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == os.environ["HOLD_MODULE"]:
            open(os.path.join(os.environ["HOLD_GATE"], "importing"), "w").close()
            time.sleep(300)
        return None

sys.meta_path.insert(0, HoldImport())
"""



def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout  # a hang's deadline, not a margin to meet
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("sent, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("command, args, held", [
    ("search.run", SMALL, "spaces"),  # its first slow import (Ray Tune)
    ("model.train", ["subset=600"], "model.data"),  # the same for model.train (torch)
    ("results.collect", ["runs/x"], "ray.tune"),  # was a KeyboardInterrupt traceback
    ("search.replay.record", ["space=augmentation", "configs=2"], "ray.tune.search"),  # the same
], ids=["search.run", "model.train", "results.collect", "search.replay.record"])
def test_a_signal_while_ray_and_torch_import_is_one_line_and_its_exit_code(tmp_path, sent, code, command, args, held):
    gate = tmp_path / "gate"
    gate.mkdir()
    env = _with_site(tmp_path, HOLD_IMPORT, HOLD_GATE=str(gate), HOLD_MODULE=held)
    proc = subprocess.Popen([sys.executable, "-m", command, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_typed_in_a_terminal)
    _wait_for_file(gate / "importing", proc)
    proc.send_signal(sent)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert err == "interrupted while starting: nothing was done\n" and out == ""
    assert not (tmp_path / "runs").exists()


def _search_held(tmp_path: Path, hold: str, name: str) -> tuple[subprocess.Popen, Path]:
    """A small search.run of 1 trial named `name`, with `hold` (a sitecustomize) on its path, and the
    gate folder (tmp_path/gate, $HOLD_GATE) where the hold says it holds."""
    gate = tmp_path / "gate"
    gate.mkdir()
    env = _with_site(tmp_path, hold, HOLD_GATE=str(gate))
    proc = subprocess.Popen([sys.executable, "-m", "search.run", *SMALL, "trials=1", f"name={name}"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, gate


def held_at(module: str, function: str, gate: str) -> str:
    """A sitecustomize (source) after which module.FUNCTION (dotted: Class.method too) first writes
    $HOLD_GATE/GATE and waits there for the test's signal: a moment the test waits for, not one it
    tries to hit."""
    return patched_on_import(module, f"""
def patch(module):
    *path, name = {function!r}.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def held(*args, **kwargs):
        open(os.path.join(os.environ["HOLD_GATE"], {gate!r}), "w").close()
        time.sleep(120)
        return original(*args, **kwargs)

    setattr(owner, name, held)
""")


# Holds ray.init where it starts the head node's processes, with Ray's own SIGTERM handler in place.
HOLD_RAY_START = held_at("ray._private.node", "Node.start_head_processes", "starting-ray")
# Holds search.run where it loads the data: its arguments are checked, Ray has not started.
HOLD_DATA = held_at("model.data", "load_split", "loading-data")


@pytest.mark.parametrize("hold, gate_file", [
    (HOLD_RAY_START, "starting-ray"),  # was exit 15, silent: Ray's handler's sys.exit(15)
    (HOLD_DATA, "loading-data"),  # was a bare "interrupted"
], ids=["while Ray starts", "while the data loads"])
def test_sigterm_before_the_search_starts_is_one_line_and_exit_143(tmp_path, hold, gate_file):
    proc, gate = _search_held(tmp_path, hold, "early")
    try:
        _wait_for_file(gate / gate_file, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err[-3000:]
    assert out.splitlines()[-1:] == ["interrupted before the search started: nothing was written"], (out, err)
    assert "Traceback" not in err and "interrupted" not in err, err[-3000:]
    assert not (tmp_path / "runs" / "early").exists()


def test_ctrl_c_stops_a_record_with_one_line_and_130_and_search_run_will_not_resume_it(tmp_path):
    from conftest import HOLD_TRIALS, wait_until

    gate = tmp_path / "gate"
    gate.mkdir()
    env = _with_site(tmp_path, HOLD_TRIALS, HOLD_GATE=str(gate), HOLD_EPOCH="1")
    proc = subprocess.Popen([sys.executable, "-m", "search.replay.record", "space=augmentation", "configs=2", "width=0.25",
                             "subset=600", "val_size=300", "max_epochs=2", "concurrency=1", "name=rec"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_typed_in_a_terminal)
    wait_until(lambda: any(gate.glob("held-*")), proc, "a trial held after its first epoch")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED, err[-3000:]  # was 1, with no word of the interruption
    assert out.splitlines()[-1] == ("interrupted: the record keeps its 0 completed trials of 2 (what a replay uses); "
                                    "a record cannot be resumed"), out
    record = json.loads((tmp_path / "runs" / "rec" / "record.json").read_text())
    assert record["device"] == "cpu" and "Traceback" not in err, err[-3000:]
    assert not (tmp_path / "runs" / "rec" / LOCK_FILE).exists()
    done = search("name=rec", "resume=true", cwd=tmp_path)  # it used to train the rest, then crash at the end
    assert done.returncode == 2 and "runs/rec is a record (python -m search.replay.record)" in done.stderr, done.stderr


# Holds ray.shutdown() where it stops Ray's processes, after it has shut the core worker down, which
# resets SIGTERM's C handler to the default (at once or within moments, from a thread of its own),
# until the test lets it go on. The hold waits up to 10 s for the kernel to show that reset
# (/proc/self/status: SIGTERM not among the caught signals), which the fix undoes within a millisecond.
HOLD_RAY_STOP = patched_on_import("ray._private.node", """
def sigterm_caught():
    with open("/proc/self/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) & (1 << 14))  # bit 14: SIGTERM (15)


def patch(module):
    original = module.Node.kill_all_processes

    def held(*args, **kwargs):
        gate = os.environ["HOLD_GATE"]
        deadline = time.monotonic() + 10
        while sigterm_caught() and time.monotonic() < deadline:
            time.sleep(0.01)
        open(os.path.join(gate, "stopping-ray"), "w").close()
        while not os.path.exists(os.path.join(gate, "go")):
            time.sleep(0.05)
        return original(*args, **kwargs)

    module.Node.kill_all_processes = held
""")


# SIGTERM once the searcher has made its first suggestion (asked the study for a trial): before Tune
# creates that trial and saves its first snapshot of the experiment.
SIGNALLED_BEFORE_THE_FIRST_SNAPSHOT = patched_on_import("search.strategy.searcher", """
import signal

def patch(module):
    original = module.HonestOptunaSearch.suggest

    def signalled(self, *args, **kwargs):
        config = original(self, *args, **kwargs)
        if isinstance(config, dict):
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs now, in this thread
        return config

    module.HonestOptunaSearch.suggest = signalled
""")


# A module being imported that sets up a descriptor (as dataclasses, enums and torch do) and is
# signalled right then: Python 3.11 wraps an exception raised inside __set_name__ in a RuntimeError.
SIGNALLED_IN_SET_NAME = """
import os, signal, sys, time
from model import overrides
overrides.starting()

class Descriptor:
    def __set_name__(self, owner, name):
        os.kill(os.getpid(), signal.SIG{name})
        time.sleep(30)

class Holder:
    field = Descriptor()
"""


@pytest.mark.parametrize("name, code", [("TERM", 143), ("INT", 130)])
def test_a_signal_while_a_class_is_made_during_the_imports_is_still_one_line(name, code):
    done = subprocess.run([sys.executable, "-c", SIGNALLED_IN_SET_NAME.format(name=name)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (code, "interrupted while starting: nothing was done\n", "")


# Holds the driver where the search has ended and its report is being collected (Ray already shut down).
HOLD_COLLECT = held_at("results.collect", "collect", "collecting")


def test_a_search_stopped_at_each_of_its_edges_finishes_on_the_command_it_prints_each_time(tmp_path):
    """One search stopped at each of its edges in turn, each time resumed by the command it printed
    (a run of its own for each edge would start Ray and a trial's process again for nothing):
    1. SIGTERM once the searcher has asked the study for its first trial, before Tune's first
       snapshot. The printed command used to restore a Tuner with no snapshot, whose searcher had
       no space (a RuntimeError traceback, exit 1, every time); without the journal's removal, the
       asked trial would stay RUNNING in the study.
    2. SIGTERM while Ray stops after the trials (was -15: the default action, as Ray's shutdown
       resets SIGTERM's handler).
    3. Ctrl-C and 4. SIGTERM while the report is made: Tune installs its Ctrl-C handler for fit()
       and leaves it there when the run ends without a signal, so either would only set Tune's
       flag. A resume whose trials have all ended runs fit() too.
    5. The printed command makes the report."""
    experiment = tmp_path / "runs" / "edges"
    gate = tmp_path / "gate"
    gate.mkdir()

    def held(hold: str, name: str) -> dict:
        (tmp_path / name).mkdir()
        return _with_site(tmp_path / name, hold, HOLD_GATE=str(gate))

    def printed(out: str) -> list[str]:
        said = [line.split("resume with", 1)[1].strip() for line in out.splitlines() if "resume with" in line]
        assert said == ["python -m search.run name=edges resume=true"], out
        return shlex.split(said[0])[3:]

    def stopped(args: list[str], env: dict, gate_file: str, sent: int, go: bool = False) -> str:
        proc = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=as_typed_in_a_terminal)
        try:
            _wait_for_file(gate / gate_file, proc)
            proc.send_signal(sent)
            if go:
                time.sleep(0.5)  # the signal is taken (or, before the fix, the process is gone) before Ray goes on
                (gate / "go").touch()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # it did not stop: leave no process behind
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sent], (gate_file, out[-2000:], err[-3000:])
        assert "Traceback" not in err and not (experiment / LOCK_FILE).exists(), err[-3000:]
        return out

    # 1. Before Tune's first snapshot: nothing of Tune's is written, the asked trial is RUNNING.
    first = search(*SMALL, "trials=3", "max_epochs=1", "name=edges", cwd=tmp_path,
                   env=held(SIGNALLED_BEFORE_THE_FIRST_SNAPSHOT, "early"))
    assert first.returncode == 143, first.stderr[-3000:]
    assert not glob.glob(str(experiment / "experiment_state-*.json")) and not glob.glob(str(experiment / "trial_*"))
    assert (experiment / "tuner.pkl").exists()
    asked = [t.state.name for t in study.load(experiment).trials]
    assert asked and set(asked) == {"RUNNING"}  # asked of the study, never Tune's trials
    args = printed(first.stdout)
    assert "resume with" in first.stdout.splitlines()[-1]

    # 2. While Ray stops after the trials: the resume command is the last line.
    out = stopped(args, held(HOLD_RAY_STOP, "stopping"), "stopping-ray", signal.SIGTERM, go=True)
    assert printed(out) == args and "resume with" in out.splitlines()[-1]

    # 3, 4. While the report is made, once for each signal: no report, the same command.
    for sent in (signal.SIGINT, signal.SIGTERM):
        out = stopped(args, held(HOLD_COLLECT, f"collecting-{sent.name}"), "collecting", sent)
        assert printed(out) == args and not (experiment / "report").exists()
        (gate / "collecting").unlink()

    # 5. Every trial has ended: the printed command makes the report.
    done = search(*args, cwd=tmp_path)
    assert done.returncode == 0 and "3 of 3 trials finished" in done.stdout, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    trials, _ = report(experiment)
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    assert sorted(t.state.name for t in study.load(experiment).trials) == ["COMPLETE"] * 3
