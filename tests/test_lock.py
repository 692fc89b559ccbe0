"""search.runtime.lock for real: a lock held by another process, the stale lock of a dead one, a folder
made and removed, and the marker used on object stores (on pyarrow's SubTreeFileSystem, a
filesystem that is not the local one, over a temporary folder)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pyarrow.fs as pafs
import pytest

from search.runtime import lock
from search.runtime.lock import LOCK_FILE, Lock, LockHeld

@pytest.fixture
def holder(tmp_path, lock_holder):
    """Another process holding the lock of tmp_path/runs/x; yields (experiment, process)."""
    experiment = tmp_path / "runs" / "x"
    return experiment, lock_holder(experiment)


def test_a_held_lock_is_refused_saying_who_holds_it(holder):
    experiment, proc = holder
    info = json.loads((experiment / LOCK_FILE).read_text())
    assert (info["pid"], info["host"], info["command"]) == (proc.pid, socket.gethostname(), "a test")
    assert info["started"][:4].isdigit()
    assert lock.holder(str(experiment))["pid"] == proc.pid
    with pytest.raises(LockHeld, match=rf"^runs/x is in use by a test \(pid {proc.pid} on {socket.gethostname()}, since "):
        Lock(str(experiment), "search.run", shown="runs/x").acquire()


def test_the_lock_of_a_dead_process_is_taken_over_with_a_note(holder):
    experiment, proc = holder
    proc.kill()  # SIGKILL: no cleanup, the file stays; the kernel drops its flock
    proc.wait()
    assert (experiment / LOCK_FILE).exists() and lock.holder(str(experiment)) is None
    mine = Lock(str(experiment), "search.run")
    mine.acquire()
    try:
        assert mine.note and f"took over the lock of a test (pid {proc.pid} on " in mine.note
        assert json.loads((experiment / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        mine.release()
    assert not (experiment / LOCK_FILE).exists() and experiment.is_dir()  # not made by this lock: kept


def test_a_lock_removes_the_folder_it_made_when_left_empty(tmp_path):
    made = Lock(str(tmp_path / "new"), "search.run")
    made.acquire()
    assert (tmp_path / "new" / LOCK_FILE).exists() and made.note is None
    made.release()
    assert list(tmp_path.iterdir()) == []
    kept = Lock(str(tmp_path / "kept"), "search.run")
    kept.acquire()
    (tmp_path / "kept" / "run.json").write_text("{}")
    kept.release()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["run.json"]


def test_object_store_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "SETTLE_S", 0.0)
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    path, shown = "runs/x/lock.json", "s3://bucket/runs/x"
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "command": "search.run", "token": "mine"}
    assert lock.acquire_marker(fs, path, mine, shown) is None
    assert lock.read_marker(fs, path) == mine
    with pytest.raises(LockHeld, match=f"if that process is gone, delete {shown}/lock.json"):
        lock.acquire_marker(fs, path, {**mine, "token": "other"}, shown)  # a live process's marker (this one's)
    lock.release_marker(fs, path, "other")  # not its marker: left alone
    assert lock.read_marker(fs, path) == mine
    lock.release_marker(fs, path, "mine")
    assert lock.read_marker(fs, path) is None
    # The marker of a process of this host that has ended is taken over; one from another host,
    # which cannot be checked from here, is not.
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = {**mine, "pid": ended.pid, "token": "dead"}
    assert lock.acquire_marker(fs, path, dead, shown) is None
    assert lock.acquire_marker(fs, path, mine, shown) == dead
    lock.release_marker(fs, path, "mine")
    elsewhere = {**dead, "host": "elsewhere"}
    assert lock.acquire_marker(fs, path, elsewhere, shown) is None
    with pytest.raises(LockHeld, match="pid .* on elsewhere"):
        lock.acquire_marker(fs, path, mine, shown)


def test_a_marker_overwritten_by_a_concurrent_start_is_not_ours(tmp_path, monkeypatch):
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    theirs = {"host": "elsewhere", "pid": 1, "command": "search.run", "token": "theirs"}

    def their_write_lands_meanwhile(seconds):  # while this process waits to read its marker back
        with fs.open_output_stream("x/lock.json") as out:
            out.write(json.dumps(theirs).encode())

    monkeypatch.setattr(lock.time, "sleep", their_write_lands_meanwhile)
    with pytest.raises(LockHeld, match="in use by search.run \\(pid 1 on elsewhere"):
        lock.acquire_marker(fs, "x/lock.json", {"host": "here", "pid": 2, "token": "mine"}, "s3://b/x")


def test_taking_over_a_dead_holders_lock_stops_the_ray_it_left_and_removes_its_folder(tmp_path):
    """After SIGKILL the holder's embedded Ray lives on (its agents for minutes) in its session
    folder /tmp/ray-XXXXXXXX, which the lock names. Stand-ins here: a process whose command line
    names the folder (raylet, workers) and a retitled one writing its log there (the agents); a
    process of another Ray's folder is left alone."""
    import tempfile
    import time

    from search.runtime.ray_session import TEMP_PARENT

    theirs, other = (tempfile.mkdtemp(prefix="ray-", dir=TEMP_PARENT) for _ in range(2))
    os.makedirs(f"{theirs}/logs")
    started = [
        subprocess.Popen(["bash", "-c", f"exec -a {theirs}/session_1/raylet sleep 300"]),
        subprocess.Popen(["bash", "-c", f"exec -a ray::DashboardAgent sleep 300 > {theirs}/logs/agent.out"]),
        subprocess.Popen(["bash", "-c", f"exec -a {other}/session_1/raylet sleep 300"]),
    ]
    try:
        for proc in started:  # until each has exec'd sleep under its new name
            while not os.readlink(f"/proc/{proc.pid}/exe").endswith("/sleep"):
                assert proc.poll() is None
                time.sleep(0.05)
        experiment = tmp_path / "runs" / "x"
        experiment.mkdir(parents=True)
        (experiment / LOCK_FILE).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": 1 << 22, "started": "then", "command": "search.run", "ray_temp": theirs}))
        mine = Lock(str(experiment), "search.run")
        mine.acquire()
        mine.release()
        assert mine.note.endswith(f"no longer running; stopped the 2 Ray processes it left and removed {theirs}")
        assert [proc.wait(timeout=30) for proc in started[:2]] == [-9, -9]
        assert not os.path.exists(theirs)
        assert started[2].poll() is None and os.path.isdir(other)
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
        for folder in (theirs, other):
            subprocess.run(["rm", "-rf", folder])
