"""One way to get a Ray runtime for a command: an embedded local instance, or an existing cluster.

    with ray_session() as info:                      # a private local Ray, gone afterwards
        ...
    with ray_session("auto") / ray_session("10.0.0.5:6379"):   # join a running cluster
        ...

Either way ray.shutdown() runs on exit, also after an exception or Ctrl-C (for a joined cluster
that only disconnects this driver; the cluster keeps running); a Ctrl-C during the shutdown waits
for it to finish. An embedded Ray keeps its session files (sockets, logs) in a temporary folder of
its own, /tmp/ray-XXXXXXXX, removed on exit: Ray's default, /tmp/ray/session_*, would keep them
for ever. A process killed outright (SIGKILL, the OOM killer) cannot remove it, and Ray's agents
outlive it for minutes: the experiment's lock records the folder (search.runtime.lock), and the next run
that takes the dead holder's lock stops those processes and removes the folder (remove_leftovers).
Joining fails with RayUnavailable (a ValueError, one line) within JOIN_TIMEOUT_S when
nothing answers at the address: Ray itself retries for minutes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HOST_PORT = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
JOIN_TIMEOUT_S = 20  # seconds; joining a running cluster takes 1-3 s
PROBE_TIMEOUT_S = 5  # a TCP connection to host:port first: a refused or unroutable address fails at once
# /tmp, not $TMPDIR: Ray's Unix socket paths (under the session folder) must stay below about 107 bytes.
TEMP_PARENT = "/tmp"
TEMP_PREFIX = "ray-"
# glibc's struct sigaction (152 bytes on x86-64 and aarch64), read and written whole; its handler
# is its first field, a pointer.
SIGACTION_BYTES, HANDLER_BYTES = 256, 8
KEEP_POLL_S = 0.0005  # how often the keeper looks; a SIGTERM can only be lost within this window
_embedded: list[str] = []  # the folder of the embedded Ray this process runs, while it runs


class RayUnavailable(ValueError):
    """The cluster at `address` cannot be joined: one line, exit code 2."""


def check_address(address: str) -> str:
    """"" (embedded local Ray), "auto" or host:port (ray://host:port too); ValueError otherwise."""
    if address in ("", "auto") or _HOST_PORT.match(address):
        return address
    raise ValueError(f"address={address!r}: give auto or host:port of a running Ray cluster (empty: a local Ray)")


@contextmanager
def ray_session(address: str = "", num_cpus: int | None = None, verbose: bool = False) -> Iterator[dict[str, Any]]:
    """Start (address="") or join (address="auto" / "host:port") Ray; yields ray.cluster_resources().

    address="" always starts a fresh embedded instance (ray.init(address="local")), never one
    that happens to be running on this machine. `num_cpus` caps a local instance (ignored when
    joining: the cluster's resources are what they are). `verbose` forwards worker logs to this
    terminal and lets Ray log at INFO. For an embedded instance RAY_AUTH_MODE is pinned to
    "disabled" unless the caller's environment sets it (a private Ray on loopback, gone
    afterwards); joining a cluster leaves it alone, so a token-authenticated cluster (cluster.yaml)
    is joined with the node's own settings.
    """
    check_address(address)
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    import internals  # here: it imports Ray Tune and Optuna

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; ray_session() owns its own runtime")
    kwargs: dict[str, Any] = {"log_to_driver": verbose, "include_dashboard": False}
    if not verbose:
        kwargs["logging_level"] = logging.ERROR
    temp_dir = None
    started = False  # ray.init returned
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            _probe(address)
            with _deadline(address, verbose), _sigterm_stays_the_commands(on_sigterm):
                try:
                    ray.init(address=address, **kwargs)
                except ConnectionError as e:  # address=auto with no cluster on this machine, ...
                    raise RayUnavailable(f"address={address}: {str(e).splitlines()[0]}") from None
        else:
            temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_PARENT)
            _embedded.append(temp_dir)
            with _own_process_group(), _sigterm_stays_the_commands(on_sigterm):
                ray.init(address="local", num_cpus=num_cpus, **internals.ray_temp_dir(temp_dir), **kwargs)
        started = True
        yield ray.cluster_resources()
    finally:
        with _interrupts_deferred(), _sigterm_handler_kept(watch=started):
            ray.shutdown()
            if temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)
                _embedded.remove(temp_dir)


def embedded_temp_dir() -> str | None:
    """The session folder of the embedded Ray this process runs now; None without one (or when
    joined to a cluster, whose files are the cluster's)."""
    return _embedded[-1] if _embedded else None


def remove_leftovers(folder: str) -> int:
    """Stop what a dead process's embedded Ray left running, and remove its session folder `folder`;
    returns how many processes were stopped. Ray's processes are found as this user's processes
    whose command line or open files name the folder: raylet, workers and the dashboard and runtime
    env agents (retitled ray::..., but writing their logs there). SIGKILL: the agents ignore SIGTERM.
    Only a folder ray_session makes (TEMP_PARENT/ray-...) is touched."""
    folder = os.path.abspath(folder)
    if os.path.dirname(folder) != TEMP_PARENT or not os.path.basename(folder).startswith(TEMP_PREFIX):
        return 0
    inside = folder + "/"
    stopped = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid() or not _names(entry.path, inside):
                continue
            os.kill(int(entry.name), signal.SIGKILL)
            stopped += 1
        except OSError:  # ended meanwhile, or not ours to look into
            continue
    shutil.rmtree(folder, ignore_errors=True)
    return stopped


def _names(proc: str, inside: str) -> bool:
    """Whether the process at /proc/PID `proc` names a path under `inside` in its command line or open files."""
    with open(f"{proc}/cmdline", "rb") as f:
        if inside.encode() in f.read():
            return True
    for fd in os.scandir(f"{proc}/fd"):
        try:
            if os.readlink(fd.path).startswith(inside):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def _probe(address: str) -> None:
    """RayUnavailable unless something accepts a TCP connection at host:port ("auto": Ray finds it)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise RayUnavailable(f"address={address}: nothing answers there ({reason}); is the cluster up?") from None


@contextmanager
def _deadline(address: str, verbose: bool) -> Iterator[None]:
    """Exit the process (code 2, one line) if joining takes longer than JOIN_TIMEOUT_S.

    Ray's connection loop runs in C++ and does not return to Python while it retries, so neither
    an exception nor a signal handler can end it: only leaving the process can. Nothing has been
    written by then (the experiment's lock and files come after Ray is up). Unless `verbose`, what
    Ray's C++ side writes to stderr meanwhile (a warning a second while something that is not a
    Ray head answers) is held back: the one line says what went wrong."""
    stderr = 2  # the process's own: Ray's C++ writes there, whatever sys.stderr is
    sys.stderr.flush()
    saved = os.dup(stderr)
    held = tempfile.TemporaryFile()
    if not verbose:
        os.dup2(held.fileno(), stderr)

    def give_up() -> None:
        message = (f"error: address={address}: no Ray cluster answered within {JOIN_TIMEOUT_S} s; is it a "
                   "Ray head's address (ray status on the head shows it)?\n")
        os.write(saved, message.encode())
        os._exit(2)

    timer = threading.Timer(JOIN_TIMEOUT_S, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        sys.stderr.flush()
        os.dup2(saved, stderr)
        os.close(saved)
        held.close()


@contextmanager
def _own_process_group() -> Iterator[None]:
    """Ray's processes, started in the block, in a process group of their own. `timeout` (and a
    script's `kill -TERM -PGID`) signals the command's whole process group: Ray's processes, killed
    along with it, left this process waiting 60 s for its GCS and exiting 1 with no resume line and
    a stale lock. In a group of their own they live on until this process, which takes SIGTERM as
    Ctrl-C, stops them. Where this process leads its group (a shell's job) or session (setsid) it
    cannot leave it, and Ray's processes share it as before. It returns to its group after the block
    (a few seconds: Ctrl-C from a terminal meanwhile reaches the group, not it)."""
    group = os.getpgrp()
    if group == os.getpid() or os.getsid(0) == os.getpid():
        yield
        return
    os.setpgid(0, 0)
    try:
        yield
    finally:
        try:
            os.setpgid(0, group)
        except OSError:  # the group is gone (timeout itself was killed): stay in this one
            pass


@contextmanager
def _sigterm_stays_the_commands(on_sigterm) -> Iterator[None]:
    """SIGTERM stays the command's (`on_sigterm`: model.overrides, SIGTERM as Ctrl-C: one line, exit
    143, the command's cleanup) around ray.init, which installs Ray's own handlers: sys.exit(15), or,
    once it starts a head node, sys.exit(1) after stopping that node's processes; and its C++ core's
    (a stack dump, exit 134). During the block, the SystemExit of Ray's handlers (ray.init never
    exits otherwise) is taken as the command's handler would take the signal: it came out as exit 15
    or 1 with no line. After the block, the command's handler is set again over Ray's. Ray's C++
    core keeps the last moments of ray.init."""
    ours = callable(on_sigterm) and threading.current_thread() is threading.main_thread()
    try:
        yield
    except SystemExit:
        if ours:
            on_sigterm(signal.SIGTERM, None)
        raise
    finally:
        if ours:
            signal.signal(signal.SIGTERM, on_sigterm)


@contextmanager
def _sigterm_handler_kept(watch: bool) -> Iterator[None]:
    """While the block runs, SIGTERM's C handler stays the one it was. ray.shutdown() shuts Ray's
    core worker down, which resets it to the default (at once, or moments later from a thread of its
    own) while Python still names its handler: a SIGTERM then would end the process on the spot,
    before it releases its lock or says how to resume (in 5 of 6 tries a second after the trials
    ended). A thread puts the handler back within KEEP_POLL_S of each change; Python's handler,
    once back, runs the command's own (a Ctrl-C's path) in the main thread. watch=False (ray.init
    was interrupted: nothing ran, so there is no lock or report to protect): no thread beside the
    shutdown of a half-started Ray; the handler is only set again after it."""
    import ctypes

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    kept = ctypes.create_string_buffer(SIGACTION_BYTES)
    done = threading.Event()

    def keep() -> None:
        now = ctypes.create_string_buffer(SIGACTION_BYTES)
        while not done.wait(KEEP_POLL_S):
            if not libc.sigaction(signal.SIGTERM, None, now) and now.raw[:HANDLER_BYTES] != kept.raw[:HANDLER_BYTES]:
                libc.sigaction(signal.SIGTERM, kept, None)

    keeper = None
    if watch and not libc.sigaction(signal.SIGTERM, None, kept):  # 0: the handler read into `kept`
        keeper = threading.Thread(target=keep, name="sigterm-keeper", daemon=True)
        keeper.start()
    try:
        yield
    finally:
        done.set()
        if keeper is not None:
            keeper.join()
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM))


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C during the block waits until it is done, then raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
