"""`python -m search.run` for real: a local Ray, Optuna, the real data subset, Parquet out.

Each search runs in a subprocess, as a user runs it, from a temporary working directory with the
default relative storage (runs/), so that concurrent starts can be sent to it and every command it
prints can be run back as printed. Stopping and resuming one: test_interrupts.py and
test_interrupts_at_the_edges.py.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import as_typed_in_a_terminal, with_site
from optuna.trial import TrialState

from model.config import Config, preset
from model.net import parameters_of
from results.schema import EPOCHS, TRIALS, read_table
from search import arguments, run
from search.runtime import devices
from search.runtime.lock import LOCK_FILE, holder
from search.runtime.ray_session import JOIN_TIMEOUT_S
from search.strategy import study
from search.report import FAILED
from search.settings import check_resources

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
# The seed network at a quarter of its width (filters 16,32, dense 64) on 600 training images:
# about a tenth of a second an epoch here, a second at full width.
SMALL = ["space=augmentation", "subset=600", "val_size=300", "concurrency=2", "width=0.25"]
SMOKE = [*SMALL, "trials=6", "max_epochs=2", "grace=1", "eta=4", "name=smoke"]


def search(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=cwd, env=env or ENV,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # say where it stood: the live view's lines and any traceback
        tail = (e.stderr or b"").decode(errors="replace")[-3000:] if isinstance(e.stderr, bytes) else (e.stderr or "")[-3000:]
        pytest.fail(f"search.run {' '.join(args)} still running after {timeout} s; its stderr so far:\n{tail}")


def start(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=cwd, env=env or ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_typed_in_a_terminal)


def report(experiment: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = read_table(experiment / "report" / "trials.parquet", TRIALS)
    epochs = read_table(experiment / "report" / "epochs.parquet", EPOCHS)
    return trials, epochs


def optuna_trials(experiment: Path) -> dict:
    """The search's Optuna study, read from its journal as any Optuna user would: Tune id -> trial."""
    return {t.user_attrs["trial_id"]: t for t in study.load(experiment).trials}


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def refusal(text: str) -> str:
    """The one line of a refusal that came once Ray was starting, after search.run's line saying so."""
    return one_line("\n".join(line for line in text.splitlines() if not line.endswith(": starting Ray and the first trials")))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The working directory of the module's searches: experiments go to its runs/."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def smoke(workdir) -> Path:
    # eta=4 keeps only the top quarter at the epoch-1 rung, so some trials are certainly stopped.
    done = search(*SMOKE, cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "top 5" in done.stdout and "report" in done.stdout
    return workdir / "runs" / "smoke"


def test_smoke_search_writes_a_valid_report(smoke):
    trials, epochs = report(smoke)
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    # The augmentation space keeps the seed network, here at width 0.25.
    narrow = Config.from_flat({**preset("seed").to_flat(), "filters": "16,32", "dense": 64})
    assert (trials["filters"] == "16,32").all() and (trials["params"] == parameters_of(narrow)).all()
    assert json.loads((smoke / "run.json").read_text())["width"] == 0.25
    assert trials["lr"].nunique() == 6  # TPE proposed six learning rates
    merged = epochs.groupby("trial_id")["val_acc"].max()
    assert (trials.set_index("trial_id")["best_val_acc"] == merged).all()
    best = json.loads((smoke / "report" / "best.json").read_text())
    # One notion of best: the last epoch's accuracy, as TPE was told it.
    assert best["metrics"]["val_acc"] == trials[trials["status"] == "completed"]["last_val_acc"].max()
    # run.json records the storage as given; the lock is gone with the process that held it.
    assert json.loads((smoke / "run.json").read_text())["storage"] == "runs"
    assert not (smoke / LOCK_FILE).exists()
    # Each trial's result.json (what the tables are built from), without Tune's CSV and TensorBoard
    # logs, whose writes cost the driver's loop (search.engine.AUTO_LOGGERS); and no checkpoint:
    # the trials were shorter than checkpoint_every.
    files = {p.name for p in smoke.glob("trial_*/*")}
    assert "result.json" in files
    assert not [f for f in files if f == "progress.csv" or f.startswith(("events.", "checkpoint_"))], files


def test_optuna_is_told_the_truth_about_stopped_trials(smoke):
    trials, epochs = report(smoke)
    assert (trials["status"] == "pruned").any(), "eta=4 must stop some trial at epoch 1"
    by_id = optuna_trials(smoke)
    assert set(by_id) == set(trials["trial_id"])
    for row in trials.itertuples():
        ot = by_id[row.trial_id]
        curve = epochs[epochs["trial_id"] == row.trial_id].sort_values("epoch")
        # Every epoch reached Optuna, the last one included (stock Ray drops the stopping result).
        assert sorted(ot.intermediate_values) == curve["epoch"].tolist()
        assert list(ot.intermediate_values.values()) == pytest.approx(curve["val_acc"].tolist())
        expected = TrialState.PRUNED if row.status == "pruned" else TrialState.COMPLETE
        assert ot.state == expected, (row.trial_id, row.status, ot.state)


def test_the_same_command_plus_resume_reprints_a_finished_search(smoke, workdir):
    before = sorted(p.name for p in smoke.iterdir())
    again = search(*SMOKE, "resume=true", cwd=workdir, timeout=60)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "top 5" in again.stdout and "6 of 6 trials finished" in again.stdout
    assert sorted(p.name for p in smoke.iterdir()) == before  # no Ray, no new experiment state


def test_resume_with_a_key_that_differs_is_refused_naming_both_values(smoke, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert run.main([*(a for a in SMOKE if not a.startswith("trials=")), "trials=7", "resume=true"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "trials=7 differs from trials=6 recorded in runs/smoke/run.json" in line
    assert line.endswith("(to search on with another trials=, start a new search with warm_start=runs/smoke)")
    assert run.main([*SMOKE, "max_params=5000", "resume=true"]) == 2  # none recorded: typed as none, not all
    assert "max_params=5000 differs from max_params=none recorded in" in one_line(capsys.readouterr().err)
    assert run.main([*(a for a in SMOKE if not a.startswith("width=")), "width=0.5", "resume=true"]) == 2
    assert "width=0.5 differs from width=0.25 recorded in" in one_line(capsys.readouterr().err)


def test_an_existing_search_is_not_overwritten(smoke, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert run.main(SMOKE) == 2
    assert "runs/smoke exists: add resume=true" in one_line(capsys.readouterr().err)



def _pickled_from_code_that_is_gone(tmp_path: Path, monkeypatch) -> bytes:
    """A pickle of an object whose class the commands this test starts cannot import: the state of
    an experiment written by an older checkout whose code has moved since (search.spend, once)."""
    import ray.cloudpickle as cloudpickle

    code = tmp_path / "older_code"
    code.mkdir()
    (code / "moved_since.py").write_text("class Gone:\n    pass\n")
    monkeypatch.syspath_prepend(str(code))
    return cloudpickle.dumps({"experiment": importlib.import_module("moved_since").Gone()})


def test_an_experiment_written_by_code_moved_since_is_one_line_on_resume_and_collect(smoke, tmp_path, monkeypatch):
    pickled = _pickled_from_code_that_is_gone(tmp_path, monkeypatch)
    older = tmp_path / "older" / "smoke"
    shutil.copytree(smoke, older)
    shutil.rmtree(older / "report")  # not finished as far as a resume can tell: it restores Tune's state
    for state in older.glob("search_gen_state-*.json"):
        state.write_bytes(pickled)
    resumed = search("name=smoke", "storage=older", "resume=true", cwd=tmp_path, timeout=120)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert resumed.stderr.strip().splitlines()[-1] == (
        "error: older/smoke was written by an older version of this service, whose Tune state this one cannot "
        "read (No module named 'moved_since'): it cannot be resumed; start a new search under another name=, or "
        "move that folder away")
    assert not (older / LOCK_FILE).exists() and not (older / "report").exists()

    # results.collect reads Tune's experiment state, where Tune keeps cloudpickled objects in JSON.
    (state,) = older.glob("experiment_state-*.json")
    content = json.loads(state.read_text())
    state.write_text(json.dumps({**content, "older": {"_type": "CLOUDPICKLE_FALLBACK", "value": pickled.hex()}}))
    collected = subprocess.run([sys.executable, "-m", "results.collect", str(older)], capture_output=True, text=True,
                               env=ENV, timeout=120)
    assert collected.returncode == 2 and collected.stdout == "", collected.stderr[-3000:]
    assert "was written by an older version of this service" in one_line(collected.stderr)
    assert "No module named 'moved_since'" in collected.stderr


def test_two_concurrent_starts_of_one_name_run_one_search(tmp_path):
    """Two starts of one name, 0.3 s apart: one runs the search, the other is refused in one line
    with exit 2, by the lock the running one holds or, if it looks that late, by the run.json the
    running one wrote. The running one's trial waits before its first epoch until the other has
    ended, so that no search can end before the other start has looked (a busy machine once let a
    one-trial search finish first, and the second start found a finished search)."""
    from conftest import HOLD_TRIALS

    gate = tmp_path / "gate"
    gate.mkdir()
    env = with_site(tmp_path, HOLD_TRIALS, ENV, HOLD_GATE=str(gate), HOLD_EPOCH="0")
    args = [*SMALL, "trials=1", "max_epochs=1", "name=twice"]
    starts = [start(*args, cwd=tmp_path, env=env)]
    time.sleep(0.3)
    starts.append(start(*args, cwd=tmp_path, env=env))
    try:
        deadline = time.monotonic() + 300  # a hang's deadline, not a margin to meet
        while all(p.poll() is None for p in starts):
            assert time.monotonic() < deadline, "neither start has ended"
            time.sleep(0.2)
        refused = next(p for p in starts if p.poll() is not None)
        said = refused.communicate()[1]
        (gate / "open").touch()
        ran = next(p for p in starts if p is not refused)
        out, err = ran.communicate(timeout=300)
    finally:
        (gate / "open").touch()
        for p in starts:
            if p.poll() is None:  # leave no search (or its Ray) behind
                os.killpg(p.pid, signal.SIGKILL)
    assert (refused.returncode, ran.returncode) == (2, 0), (said[-2000:], err[-2000:])
    line = refusal(said)
    assert "runs/twice is in use by search.run (pid " in line or \
        line == "error: runs/twice exists: add resume=true to continue it, or give another name=", line
    trials, _ = report(tmp_path / "runs" / "twice")
    assert len(trials) == 1 and set(trials["status"]) == {"completed"}
    assert len(glob.glob(str(tmp_path / "runs" / "twice" / "trial_*"))) == 1


def test_a_search_whose_every_trial_fails_exits_1_and_lists_the_errors(tmp_path):
    from conftest import BREAK_TRAINING

    env = with_site(tmp_path, BREAK_TRAINING, ENV)
    done = search(*SMALL, "trials=1", "max_epochs=1", "name=broken", cwd=tmp_path, env=env)
    assert done.returncode == FAILED, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "every trial failed (1 of 1, each after 2 retries)" in done.stdout
    trials, _ = report(tmp_path / "runs" / "broken")
    assert set(trials["status"]) == {"error"}
    for trial_id in trials["trial_id"]:
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(f"{trial_id}:"))
        traceback = f"runs/broken/trial_{trial_id}/error.txt"
        assert "RuntimeError: injected failure: this trainer breaks on purpose" in line and traceback in line
        failures = [l for l in (tmp_path / traceback).read_text().splitlines() if l.startswith("RuntimeError: injected")]
        assert len(failures) == 3  # the first try and 2 retries


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process may not write to: immutable for root (who ignores permissions), else 0555."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("root, and chattr +i is not available here")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def _corrupt_gzip(tmp_path: Path, fmnist_dir: Path) -> Path:
    """Fashion-MNIST with a training-images file whose gzip body does not decompress."""
    folder = tmp_path / "data"
    folder.mkdir()
    for pair in ("train", "test"):
        for name in run.fmnist.IDX_FILES[pair]:
            shutil.copy(fmnist_dir / f"{name}.gz", folder / f"{name}.gz")
    path = folder / f"{run.fmnist.IDX_FILES['train'][0]}.gz"
    raw = bytearray(path.read_bytes())
    raw[1000:1400] = bytes(400)  # zeros in the middle of the deflate stream
    path.write_bytes(bytes(raw))
    return path


# (arguments, what the one line must say); "{unwritable}", "{data}" and "{file}" are filled in.
BAD = [
    (["space=nope"], "unknown space 'nope'; choose one of seed, baseline"),
    (["space=augmentation", "budget=huge"], "unknown budget 'huge'; choose one of smoke, standard"),
    (["space=augmentation", "colour=red"], "unknown key 'colour'; valid keys: space, budget"),
    (["space=augmentation", "trials=many"], "trials='many': expected an integer"),
    (["space=augmentation", "grace=9"], "grace=9 exceeds max_epochs=3"),
    (["space=augmentation", "gpus_per_trial=1.5"], "above 1 it must be a whole number"),
    (["space=augmentation", "cpus_per_trial=nan"], "cpus_per_trial=nan: expected a finite number"),
    (["space=augmentation", "gpus_per_trial=nan"], "gpus_per_trial=nan: expected a finite number"),
    (["space=augmentation", "gpus_per_trial=inf"], "gpus_per_trial=inf: expected a finite number"),
    (["space=augmentation", "seed=99999999999999999999"], "seed=99999999999999999999: must lie between 0 and 4,294,967,295"),
    (["space=augmentation", "seed=-1"], "seed=-1: must lie between 0 and"),
    (["space=augmentation", "trials=1" + "0" * 400], "0000: must lie between 1 and"),  # no float holds it
    (["space=augmentation", "max_params=1" + "0" * 30], "0000: too large (at most 9,223,372,036,854,775,807)"),
    (["space=augmentation", "budget=standard", "gpus_per_trial=0", "cpu_hours=1"],
     "budget=standard gives gpu_hours=0.09, but trials use no GPU (gpus_per_trial=0): add gpu_hours=none"),
    (["space=augmentation", "cpu_hours=0"], "cpu_hours=0: a budget must be positive (none: no limit)"),
    (["space=augmentation", "cpu_hours=-1"], "cpu_hours=-1: a budget must be positive"),  # was "must be at least 0"
    (["space=augmentation", "name=" + "a" * 300], "name= has 300 characters; a folder name has at most 255"),
    (["space=augmentation", "storage=" + "a" * 300], "a folder name of 300 bytes; at most 255 each"),
    (["space=augmentation", "max_epochs=100000"], "max_epochs=100000: must lie between 1 and 10,000"),
    (["space=augmentation", "width=0"], "width=0: must be positive"),
    (["space=augmentation", "width=-0.5"], "width=-0.5: must lie between 0 and 16"),
    (["space=augmentation", "width=32"], "width=32.0: must lie between 0 and 16"),
    (["space=augmentation", "width=wide"], "width='wide': expected a number"),
    (["space=augmentation", "val_size=60000"], "val_size=60000: must lie between 1 and 59,999"),
    (["space=augmentation", "val_size=59999"], "subset=3000 with val_size=59999: the 60,000 training images less 59,999 "
                                               "for validation leave 1; give val_size=57000 or less"),  # subset=1: no batch
    (["space=augmentation", "val_size=59000"], "leave 1,000; give subset=1000 or less, or val_size=57000 or less"),
    (["space=augmentation", "subset=40"], "batch_size=64 exceeds the 40 training images"),
    (["space=augmentation", "subset=4e1"], "batch_size=64 exceeds the 40 training images"),  # as epochs=1e3 is read
    (["space=augmentation", "trials=2.5"], "trials='2.5': expected an integer"),
    (["space=full", "subset=300"], "batch_size=512 exceeds the 300 training images"),
    (["space=architecture", "max_params=1"], "max_params=1: none of 1,000 networks drawn from this space has so few"),
    (["space=augmentation", "storage={file}"], "is a file, not a folder"),
    (["space=augmentation", "storage={unwritable}"], "is not writable by this user"),
    (["space=augmentation", "storage="], "storage= is empty"),
    (["space=augmentation", "storage=/proc/runs"], "storage=/proc/runs: cannot make a folder in /proc"),  # root passes os.access there
    (["space=augmentation", "storage=nope://bucket/runs"], "nope://bucket/runs: not a usable URI"),
    (["space=augmentation", "storage=~nosuchuser9/runs"], "storage=~nosuchuser9/runs: ~nosuchuser9 is no user's home folder"),
    (["space=augmentation", "name=."], "name='.': use letters, digits"),
    (["space=augmentation", "name=.."], "name='..': use letters, digits"),
    (["space=augmentation", "name="], "name= is empty"),
    (["space=augmentation", "name=a/b"], "name='a/b': use letters, digits"),
    (["space=augmentation", "data_dir={data}"], "train-images-idx3-ubyte.gz: cannot be read"),
    (["space=augmentation", "data_dir=/nonexistent"], "data_dir=/nonexistent: no such folder"),
    (["space=augmentation", "data_dir={file}"], "is a file, not a folder"),
    (["space=augmentation", "replay=/nonexistent"], "replay=/nonexistent: /nonexistent does not exist; give a record folder"),
    (["space=augmentation", "replay={file}"], "is not a record: it has no record.json"),
    (["space=augmentation", "warm_start="], "warm_start='': give experiment folders, comma-separated"),
    (["space=augmentation", "replay=runs/r,./runs/r/"], "replay=runs/r,./runs/r/: a record named twice"),
    (["space=augmentation", "warm_start=/nonexistent"], "warm_start=/nonexistent does not exist; give experiment folders"),
    (["space=augmentation", "warm_start={file},{file}"], "named twice"),
    (["space=augmentation", "address=auto"], "multi-node Tune needs storage every node can reach"),
    (["space=augmentation", "address=not an address"], "address='not an address'"),
    (["space=augmentation", "address=127.0.0.1:1", "shared=true"], "address=127.0.0.1:1: nothing answers there"),
    (["resume=true"], "resume=true needs name=NAME"),
    (["name=ghost", "resume=true"], "nothing to resume: runs/ghost/run.json does not exist; give the name= (and "
                                    "storage=) of a search started before, or start it without resume=true"),
    (["space=augmentation", "name=ghost", "resume=true"], "nothing to resume: runs/ghost/run.json does not exist"),
    (["list", "space=full"], "list takes nothing else: python -m search.run list"),
    (["space=full", "list"], "list takes nothing else: python -m search.run list"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_on_disk(tmp_path, monkeypatch, capsys, unwritable, fmnist_dir,
                                                           args, message):
    fill = {"{unwritable}": lambda: unwritable / "runs", "{data}": lambda: _corrupt_gzip(tmp_path, fmnist_dir).parent,
            "{file}": lambda: tmp_path / "a-file"}
    (tmp_path / "a-file").write_text("not a folder")
    argv = [next((a.replace(k, str(make())) for k, make in fill.items() if k in a), a) for a in args]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    assert run.main(argv) == 2
    assert message in one_line(capsys.readouterr().err)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_storage_under_home_is_expanded_as_a_shell_would(tmp_path, monkeypatch):
    # storage='~/x' (quoted, as in a script or a config file) is the home folder's x, as the printed
    # commands, pasted into a shell, would take it; no folder named ~ in the working directory.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    settings = run.parse(["space=augmentation", "storage=~/x", "name=t"])
    assert settings.storage == str(tmp_path / "home" / "x")
    assert settings.experiment == str(tmp_path / "home" / "x" / "t")
    assert f"storage={tmp_path}/home/x" in shlex.split(settings.resume_command())
    assert list(tmp_path.iterdir()) == []


def test_an_address_that_answers_but_is_no_ray_head_is_one_line_at_the_join_deadline(tmp_path):
    """Something accepts the connection (here: a socket that answers every request with a 404) but
    no Ray head: Ray's C++ retries for minutes and warns every second; the search gives up alone.

    Only the join deadline (JOIN_TIMEOUT_S) writes this line, so the line itself shows that the
    deadline ended the wait; no wall-clock margin over it, which a busy machine would eat. Without
    the deadline the test fails, on the subprocess timeout or on Ray's own line."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_404s() -> None:
        while True:
            connection, _ = listener.accept()
            connection.sendall(b"HTTP/1.1 404 Not Found\r\n\r\n")

    threading.Thread(target=answer_404s, daemon=True).start()
    done = search("space=augmentation", f"address=127.0.0.1:{port}", "shared=true", "name=x", cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert f"address=127.0.0.1:{port}: no Ray cluster answered within {JOIN_TIMEOUT_S} s" in one_line(done.stderr)
    assert done.stdout == "" and not (tmp_path / "runs").exists()


def test_storage_failing_under_a_search_is_one_line_with_the_resume_command(tmp_path, monkeypatch, capsys):
    from contextlib import contextmanager

    from search import engine

    @contextmanager
    def up(*args, **kwargs):  # Ray is up, with the resources the search asks for
        yield {"CPU": 2.0}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine, "ray_session", up)
    monkeypatch.setattr(engine, "create_tuner", full_disk)
    monkeypatch.chdir(tmp_path)
    assert run.main([*SMALL, "name=full"]) == FAILED
    assert refusal(capsys.readouterr().err) == (
        "error: [Errno 28] No space left on device; once that is fixed, resume with  python -m search.run name=full resume=true"
    )
    assert holder(str(tmp_path / "runs" / "full")) is None  # the lock went with the search


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"space": "augmentation"}'])
def test_a_damaged_run_json_is_named_when_resuming(tmp_path, monkeypatch, capsys, content):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "run.json").write_text(content)
    monkeypatch.chdir(tmp_path)
    assert run.main(["name=x", "resume=true"]) == 2
    assert one_line(capsys.readouterr().err).startswith("error: runs/x/run.json")
    assert sorted(p.name for p in (tmp_path / "runs" / "x").iterdir()) == ["run.json"]


@pytest.mark.parametrize(("key", "text"), [("subset", "Infinity"), ("trials", "1" + "0" * 400), ("cpu_hours", "NaN"),
                                           ("seed", "1e400")])
def test_a_number_python_cannot_hold_in_run_json_is_named_when_resuming(tmp_path, monkeypatch, capsys, key, text):
    monkeypatch.chdir(tmp_path)
    recorded = run.parse(["space=augmentation", "name=x"]).recorded()
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "run.json").write_text(json.dumps({**recorded, key: "@"}).replace('"@"', text))
    assert run.main(["name=x", "resume=true"]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"error: runs/x/run.json: {key}=")
    assert sorted(p.name for p in (tmp_path / "runs" / "x").iterdir()) == ["run.json"]


def test_a_large_finite_budget_recorded_in_run_json_reads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recorded = run.parse(["space=augmentation", "name=x", "cpu_hours=1e20"])
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "run.json").write_text(json.dumps(recorded.recorded()))
    assert run.parse(["name=x", "resume=true"]).cpu_hours == 1e20


def test_an_experiment_in_use_is_refused_saying_who_holds_it(smoke, workdir, monkeypatch, capsys, lock_holder):
    from search.runtime.lock import Lock

    holder = lock_holder(smoke)
    monkeypatch.chdir(workdir)
    assert run.main(["name=smoke", "resume=true"]) == 2
    assert f"runs/smoke is in use by a test (pid {holder.pid} on " in one_line(capsys.readouterr().err)
    lock = Lock(str(smoke), "search.run")
    with pytest.raises(ValueError, match=f"in use by a test \\(pid {holder.pid} "):
        lock.acquire()


def test_help_prints_usage_and_every_key(capsys):
    for flag in ("--help", "-h"):
        assert run.main([flag]) == 0
        out = capsys.readouterr().out
        assert out.startswith("`python -m search.run") and all(f"  {key} " in out for key in run.KEYS)


def test_list_names_every_space_and_parameter_from_its_first_line(capsys):
    import spaces

    assert run.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{next(iter(spaces.SPACES))} (from preset ")  # no blank line first
    assert [line for line in lines if line != line.rstrip()] == []
    for name, space in spaces.SPACES.items():
        assert any(line.startswith(f"{name} (from preset {space.PRESET})") for line in lines)
        assert all(f" {key} " in out for key in space.PARAMS)


@pytest.mark.parametrize("command", ["search.run", "search.replay.record"])
@pytest.mark.parametrize("key", ["gpus_per_trial", "cpus_per_trial"])
def test_trials_this_machine_cannot_hold_are_refused_before_ray_starts_or_anything_is_written(
        tmp_path, monkeypatch, capsys, command, key):
    import ray

    if key == "gpus_per_trial" and devices.local_gpus():
        pytest.skip("this machine has a GPU")
    asked = {"gpus_per_trial": "0.25", "cpus_per_trial": f"{(os.cpu_count() or 1) + 1}"}[key]

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for a search this machine cannot run")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.chdir(tmp_path)
    size = "trials=2" if command == "search.run" else "configs=2"
    assert importlib.import_module(command).main(["space=augmentation", size, f"{key}={asked}"]) == 2
    assert f"{key}={float(asked)} but this machine has" in one_line(capsys.readouterr().err)  # and no "starting Ray"
    assert list(tmp_path.iterdir()) == []


def test_a_gpu_budget_on_a_machine_without_gpus_names_every_key_to_change_in_one_line(tmp_path, monkeypatch, capsys):
    # budget=standard gives gpus_per_trial=0.25 and gpu_hours=0.09: the advice names both, so that
    # following it is one command, not two refusals in turn.
    if devices.local_gpus():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    assert run.main(["space=augmentation", "budget=standard"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "use gpus_per_trial=0 gpu_hours=none (cpu_hours=N for a CPU budget) or address=" in line, line
    settings = arguments.parse(["space=augmentation", "budget=standard", "gpus_per_trial=0", "gpu_hours=none"])
    check_resources(settings, devices.local_resources())  # the advice, followed, passes every check
    assert list(tmp_path.iterdir()) == []


def test_max_params_and_a_cpu_hour_budget_bound_a_search(tmp_path):
    # 6 trials asked for; the budget (0.36 CPU-seconds) is spent by the first epoch, which ends the search
    # (one trial at a time: a second would only add a process to start).
    done = search("space=architecture", "subset=600", "val_size=300", "concurrency=1", "trials=6", "max_epochs=2",
                  "grace=1", "max_params=100000", "cpu_hours=0.0001", "name=bounded", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CPU-hour budget is spent" in done.stdout and "refused, never trained" in done.stdout
    # The live view's last line: finished, and the trials the budget stopped pruned, as in the tables.
    ending = [line for line in done.stderr.splitlines() if "] finished" in line or "] stopped" in line]
    assert ending and "finished after" in ending[-1] and "unfinished" not in ending[-1], done.stderr[-3000:]
    trials, _ = report(tmp_path / "runs" / "bounded")
    assert 1 <= len(trials) < 6 and (trials["params"].dropna() <= 100_000).all()  # NaN: stopped before an epoch
    refused = [t for t in study.load(tmp_path / "runs" / "bounded").trials if t.user_attrs.get("refused")]
    assert refused and all(t.user_attrs["params"] > 100_000 for t in refused)
