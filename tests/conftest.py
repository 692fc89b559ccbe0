"""Shared fixtures: the real Fashion-MNIST files (Debian's package or FASHION_MNIST_DIR), loaded once.

Without the data, its tests skip on a developer's machine but fail where the environment variable
CI is set (as CI services set it): a CI run that skipped them would pass without testing the data.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from model import data

# The commands these tests run print as to a log file unless a test sets COLUMNS itself: a COLUMNS
# inherited from where the suite runs (pytest-xdist's workers set 80) would wrap their lines there.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist's workers share the cores: each worker's torch takes its share of them, and its
    Ray trials run at the priority of the other worker's tests. Set here, before collection imports
    torch, and inherited by every command a test starts (Ray's trials too):
    - OMP_NUM_THREADS: torch reads it once; a thread per core in each worker made OpenMP threads
      outnumber the cores and spin at every barrier for one that was not running (the 2-epoch
      training test beside one busy process: 108 s with 2 threads, 7.7 s with 1);
    - RAY_worker_niceness=0: Ray starts its workers at nice 15, and a trial at nice 15 beside the
      other worker's in-process torch at nice 0 all but stops (a 6-configuration record, 19 s on
      a quiet machine, beside three busy processes: 2.7-3.5 min at nice 15, 1.1 min at 0; in CI
      runs beside other work it passed its 300 s timeout)."""
    worker = getattr(config, "workerinput", None)  # None in the process that starts the workers, or without -n
    if worker is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // worker["workercount"])))
        os.environ.setdefault("RAY_worker_niceness", "0")


# The files that take minutes (Ray searches, most in subprocesses), the longest first. pytest-xdist
# hands whole files to its workers in collection order (the Makefile's --no-loadscope-reorder), so
# these start first and none ends the run alone. Its own order, most tests first, handed out
# test_interrupts.py (4 tests, 3 minutes) and test_multinode.py (1 test, 1 minute) last. The order
# is what each file took with -n 4 on 2 cores (2026-12-07); a stale order only costs balance.
LONG_FILES = ("test_search_run.py", "test_retrain.py", "test_interrupts_at_the_edges.py", "test_replay.py",
              "test_interrupts.py", "test_pareto.py", "test_cluster_config.py", "test_multinode.py", "test_trainer.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONG_FILES first, in their order; the rest after them as collected (a stable sort keeps each
    file's tests in their own order)."""
    rank = {name: place for place, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _data_dir() -> Path | None:
    given = os.environ.get("FASHION_MNIST_DIR")
    if given:
        return Path(given)
    if all((data.DEBIAN_DIR / f"{name}.gz").exists() for pair in data.IDX_FILES.values() for name in pair):
        return data.DEBIAN_DIR
    return None


def _run_for_a_reader_gone(*args: str) -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120, cwd=Path(__file__).resolve().parents[1])
    finally:
        os.close(write)


@pytest.fixture
def reader_gone() -> Callable[..., subprocess.CompletedProcess]:
    """reader_gone(*ARGS): `python -m ARGS` whose stdout is a pipe nobody reads any more (as
    `| head -1` leaves it once it has its line); the reader is gone before the command writes, so
    every write meets it."""
    return _run_for_a_reader_gone


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


# Another process that takes an experiment's lock, says so, and holds it for two minutes.
_HOLD = ("import sys, time; from search.runtime.lock import Lock; held = Lock(sys.argv[1], 'a test'); held.acquire(); "
         "print('held', flush=True); time.sleep(120)")
HOLD_READY_S = 60  # the holder imports search.runtime.lock (pyarrow) first: seconds, even on a busy machine


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """lock_holder(experiment) starts a process holding that experiment's lock and returns once it
    holds it; the process is killed after the test. A holder that neither says "held" nor exits
    within HOLD_READY_S fails the test instead of hanging it."""
    started: list[subprocess.Popen] = []

    def hold(experiment: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(experiment)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)
        # select before readline: a bare readline() would wait for ever on a holder that hangs.
        ready, _, _ = select.select([proc.stdout], [], [], HOLD_READY_S)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "held":
            proc.kill()
            pytest.fail(f"the lock holder did not say 'held' (waited up to {HOLD_READY_S} s): {line!r} "
                        f"{proc.communicate()[1][-2000:]}")
        return proc

    try:
        yield hold
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def with_site(folder: Path, code: str, base: dict, **env: str) -> dict:
    """`base` plus `env`, with a sitecustomize of `code` (written into folder/inject) first on its
    PYTHONPATH: the commands a test starts with it, and their Ray workers, run `code` at start."""
    inject = folder / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(code)
    return {**base, **env, "PYTHONPATH": os.pathsep.join([str(inject), *filter(None, [base.get("PYTHONPATH")])])}


def patched_on_import(module: str, patch: str) -> str:
    """A sitecustomize (source) that calls patch(MODULE) once `module` is imported: `patch` is
    source defining that function (os, sys and time are imported). Put on PYTHONPATH, it reaches the
    Ray workers too, which inherit the driver's environment."""
    return _PATCH_ON_IMPORT.replace("MODULE_NAME", repr(module)).replace("PATCH_SOURCE", patch)


_PATCH_ON_IMPORT = """
import importlib.abc, importlib.util, os, sys, time

PATCH_SOURCE

class PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE_NAME:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PatchOnImport())
"""

# Replaces Trainer.run_epoch by WRAP(run_epoch) once model.trainer is imported.
_PATCH_RUN_EPOCH = patched_on_import("model.trainer", """
WRAP_SOURCE

def patch(module):
    module.Trainer.run_epoch = wrap(module.Trainer.run_epoch)
""")

# Holds trials: every trainer about to start its epoch $HOLD_EPOCH + 1 writes held-<pid> into the
# folder $HOLD_GATE and waits there until the file "open" appears in it (a trial that reaches the
# gate once it is open goes straight on). "A trial N epochs in" becomes a state that lasts until
# the test says so, instead of a moment to catch by polling.
HOLD_TRIALS = _PATCH_RUN_EPOCH.replace("WRAP_SOURCE", """
def wrap(run_epoch):
    gate, epoch = os.environ["HOLD_GATE"], int(os.environ.get("HOLD_EPOCH", "1"))

    def held(self):
        if self.epoch == epoch and not os.path.exists(os.path.join(gate, "open")):
            open(os.path.join(gate, f"held-{os.getpid()}"), "w").close()
            while not os.path.exists(os.path.join(gate, "open")):
                time.sleep(0.1)
        return run_epoch(self)

    return held
""")


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Until ready() while `proc` runs (its stderr a pipe); `timeout` s is a hang's deadline, not a
    margin to meet."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"hung: {what}"
        time.sleep(0.5)


def wait_until_held_and_snapshotted(gate: Path, experiment: Path, proc: subprocess.Popen, held: int = 2) -> None:
    """Until `held` trials stand at HOLD_TRIALS' gate and Tune has snapshotted the experiment since
    (at least every 10 s): what a resume after a kill starts from."""
    def ready() -> bool:
        at_gate = sorted(gate.glob("held-*"))
        snapshots = sorted(experiment.glob("experiment_state-*.json"))
        return len(at_gate) == held and bool(snapshots) and \
            snapshots[-1].stat().st_mtime > max(h.stat().st_mtime for h in at_gate) + 1

    wait_until(ready, proc, f"{held} trials at the gate and a snapshot since")


# Breaks every trial's training (the driver never trains).
BREAK_TRAINING = _PATCH_RUN_EPOCH.replace("WRAP_SOURCE", """
def wrap(run_epoch):
    def broken(self):
        raise RuntimeError("injected failure: this trainer breaks on purpose")

    return broken
""")


@contextmanager
def local_ray(module: str, num_cpus: int = 2) -> Iterator[None]:
    """A local Ray for a test's own Tune runs in this process, shut down after: no token auth, no
    Tune console boxes, and the test module `module`'s functions sent to the workers by value (they
    cannot import a test module)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.setenv("RAY_AIR_NEW_OUTPUT", "0")
        import ray

        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


def as_typed_in_a_terminal() -> None:
    """Popen's preexec_fn for a command a test stops with Ctrl-C: SIGINT at its default, as a command
    typed in a terminal has it. A suite started in the background of a script (`make test &`) runs
    with SIGINT ignored, which its commands would inherit, and a command that finds Ctrl-C ignored
    leaves it so while it starts (model.overrides.starting)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
