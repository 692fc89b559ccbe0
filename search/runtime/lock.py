"""One process per experiment folder: an exclusive lock, the file lock.json in the folder.

    lock = Lock("/abs/runs/NAME", "search.run", shown="runs/NAME")
    lock.acquire()           # LockHeld (one line: who holds it) when it is taken; LockError when it cannot be made
    if lock.note: ...        # says whose stale lock was taken over
    try: ... finally: lock.release()

The file says who holds the lock: host, pid, start time and command. It is the first thing a
search or a retrain writes into the folder, and it is removed on every exit that runs Python's
cleanup (success, error, Ctrl-C). After SIGKILL or a crash of the machine it stays behind; the
next process takes it over and says so. The file also names the session folder of the holder's
embedded Ray (search.runtime.ray_session), if it has one: taking over a dead holder's lock on the same host
stops the Ray processes it left and removes that folder.

Local folders (also NFS, storage with shared=true) are locked with flock(2) on the file: the
kernel drops the lock when its holder dies, however it dies, so a lock whose flock is free belongs
to a dead process. Object stores (s3://, gs://) have no locks: there lock.json is a marker, written
and read back after a second to see that no one else wrote theirs. The limits: two starts on
different machines less than about a second apart may both go ahead, and a marker left by a
process that died on another machine cannot be checked from here; it must be deleted by hand (the
refusal names the file).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone

import pyarrow.fs as pafs

from results.schema import locate
from search.runtime.ray_session import embedded_temp_dir, remove_leftovers

LOCK_FILE = "lock.json"
RETRIES = 3  # a probe (holder()) shares the flock for microseconds: try again before saying "held"
RETRY_S = 0.2
SETTLE_S = 1.0  # object stores: seconds between writing the marker and reading it back
MAX_BYTES = 1 << 16  # a lock file is a line of JSON


class LockError(ValueError):
    """The experiment's lock cannot be taken (one line): the folder or the file cannot be made."""


class LockHeld(LockError):
    """Another live process holds the experiment; the message says who."""


def holder(experiment: str) -> dict | None:
    """Who holds `experiment`'s lock now, without taking it or writing anything; None when no one."""
    fs, folder = locate(experiment)
    path = f"{folder}/{LOCK_FILE}"
    if not isinstance(fs, pafs.LocalFileSystem):
        info = read_marker(fs, path)
        return info if info is not None and not _dead_here(info) else None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file (or not readable: then taking the lock will say why)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _parse(os.pread(fd, MAX_BYTES, 0)) or {}
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken
    return None


def held_message(where: str, info: dict) -> str:
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('started', '?')}"
    return f"{where} is in use by {info.get('command', 'another process')} ({who}); wait for it to end or stop it"


class Lock:
    """The lock of the experiment folder `experiment` (a local path or a URI), for `command`.
    Messages name the folder as `shown` (default: `experiment`). After acquire(), `note` says
    whose stale lock was taken over (None when there was none)."""

    def __init__(self, experiment: str, command: str, shown: str | None = None) -> None:
        self.shown = shown or experiment
        self._fs, self._folder = locate(experiment)
        self._path = f"{self._folder}/{LOCK_FILE}"
        self.info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "token": uuid.uuid4().hex,  # tells this process's marker from another's on object stores
            "ray_temp": embedded_temp_dir(),  # what a SIGKILL leaves behind: the next holder removes it
        }
        self.note: str | None = None
        self._fd: int | None = None  # local: the open, flocked lock file
        self._created = False  # local: this lock made the folder (and removes it if it stays empty)

    def acquire(self) -> None:
        if isinstance(self._fs, pafs.LocalFileSystem):
            previous = self._acquire_local()
        else:
            previous = acquire_marker(self._fs, self._path, self.info, self.shown)
        if previous:
            self.note = (
                f"note: took over the lock of {previous.get('command', 'a process')} (pid {previous.get('pid', '?')} "
                f"on {previous.get('host', '?')}, since {previous.get('started', '?')}), which is no longer running"
            ) + _clean_up_after(previous)

    def release(self) -> None:
        if self._fd is None:
            release_marker(self._fs, self._path, self.info["token"])
            return
        try:
            os.unlink(self._path)  # while still holding the flock: no one can have taken it meanwhile
        except FileNotFoundError:
            pass  # the folder was moved or removed under us
        finally:
            os.close(self._fd)
            self._fd = None
        self._remove_created()

    def _acquire_local(self) -> dict | None:
        if not os.path.isdir(self._folder):
            try:
                os.makedirs(self._folder)
                self._created = True
            except FileExistsError:
                pass  # made meanwhile by another process (or a file: os.open below says so)
            except OSError as e:
                raise LockError(f"{self.shown}: cannot create the experiment folder ({e.strerror})") from None
        for attempt in range(RETRIES + 1):
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                self._remove_created()
                raise LockError(f"{self.shown}/{LOCK_FILE}: cannot create the lock file ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _parse(os.pread(fd, MAX_BYTES, 0)) or {}
                os.close(fd)
                if attempt < RETRIES:
                    time.sleep(RETRY_S)
                    continue
                self._remove_created()
                raise LockHeld(held_message(self.shown, info)) from None
            if not _same_file(fd, self._path):  # the holder removed the file between our open and flock
                os.close(fd)
                continue
            previous = _parse(os.pread(fd, MAX_BYTES, 0))
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(self.info) + "\n").encode(), 0)
            os.fsync(fd)
            self._fd = fd
            return previous
        raise LockHeld(f"{self.shown}/{LOCK_FILE}: the lock keeps changing hands; try again")

    def _remove_created(self) -> None:
        if self._created:
            try:
                os.rmdir(self._folder)  # only when empty: a refusal leaves nothing behind
            except OSError:
                pass


# --- object stores: a marker, no lock ----------------------------------------------------------


def acquire_marker(fs: pafs.FileSystem, path: str, info: dict, shown: str) -> dict | None:
    """Write `info` as the marker at `path` unless a live process's is there; the stale one taken over."""
    previous = read_marker(fs, path)
    if previous is not None and not _dead_here(previous):
        raise LockHeld(f"{held_message(shown, previous)}; if that process is gone, delete {shown}/{LOCK_FILE}")
    try:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:  # one object: it appears whole
            out.write((json.dumps(info) + "\n").encode())
    except OSError as e:
        raise LockError(f"{shown}/{LOCK_FILE}: cannot write the lock ({e})") from None
    time.sleep(SETTLE_S)
    current = read_marker(fs, path) or {}
    if current.get("token") != info["token"]:
        raise LockHeld(held_message(shown, current))
    return previous


def release_marker(fs: pafs.FileSystem, path: str, token: str) -> None:
    """Delete the marker at `path` if it is still the one with `token`."""
    current = read_marker(fs, path)
    if current is not None and current.get("token") == token:
        fs.delete_file(path)


def read_marker(fs: pafs.FileSystem, path: str) -> dict | None:
    """The marker's contents; None when there is none; {} when it is unreadable (someone's, still)."""
    try:
        with fs.open_input_stream(path) as stream:
            raw = stream.readall()
    except FileNotFoundError:
        return None
    return _parse(raw) or {}


def _parse(raw: bytes) -> dict | None:
    try:
        info = json.loads(raw)
    except ValueError:  # empty (just created) or half written
        return None
    return info if isinstance(info, dict) else None


def _clean_up_after(previous: dict) -> str:
    """Remove what the dead holder `previous`'s embedded Ray left on this host; the note's ending."""
    folder = previous.get("ray_temp")
    if not isinstance(folder, str) or previous.get("host") != socket.gethostname() or not os.path.isdir(folder):
        return ""  # none, or on another machine (NFS), or already gone
    stopped = remove_leftovers(folder)
    processes = f"{stopped} Ray process{'' if stopped == 1 else 'es'}"
    return f"; stopped the {processes} it left and removed {folder}" if stopped else f"; removed {folder}"


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _dead_here(info: dict) -> bool:
    """True when `info` names a process on this host that is no longer running."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
