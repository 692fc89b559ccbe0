"""Hydra-style `key=value` command lines, without Hydra: one parser for every entry point, and how
every entry point ends (`command`: exit codes, Ctrl-C and SIGTERM, a reader of stdout that leaves)."""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import Callable, Iterable
from typing import NoReturn

HELP_FLAGS = ("-h", "--help")
HELP_WIDTH = 80  # columns: every command's --help reads whole in a terminal of the default width


def wants_help(argv: Iterable[str]) -> bool:
    """True when the command line asks for usage (-h or --help anywhere)."""
    return any(arg in HELP_FLAGS for arg in argv)


def usage(doc: str, keys: dict[str, str] | None = None, after: str = "") -> str:
    """A command's --help: its docstring, then its keys (each one's text wrapped in a column of its
    own), then `after`. Paragraphs of prose are wrapped to HELP_WIDTH; a paragraph with an indented
    line (examples, lists) is kept as written, so it must fit by itself."""
    wrap = functools.partial(textwrap.fill, width=HELP_WIDTH, break_long_words=False, break_on_hyphens=False)
    blocks = [wrap(" ".join(block.split())) if not any(line.startswith(" ") for line in block.splitlines()) else block
              for block in doc.strip().split("\n\n")]
    if keys:
        column = max(map(len, keys)) + 4  # "  key  text"
        blocks.append("Keys:\n" + "\n".join(
            wrap(text, initial_indent=f"  {key:<{column - 4}}  ", subsequent_indent=" " * column)
            for key, text in keys.items()))
    if after:
        blocks.append(wrap(after))
    return "\n\n".join(blocks)


def parse(argv: Iterable[str], valid_keys: Iterable[str]) -> dict[str, str]:
    """{key: raw text}; ValueError (one line, listing what is accepted) on a malformed or unknown key."""
    valid = list(valid_keys)
    out: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ValueError(f"{arg!r} is not key=value; valid keys: {', '.join(valid)} (--help for usage)")
        if key not in valid:
            raise ValueError(f"unknown key {key!r}; valid keys: {', '.join(valid)}")
        if key in out:
            raise ValueError(f"{key} is given twice")
        out[key] = value
    return out


def parse_bool(key: str, text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{key}={text!r}: expected true or false")
    return lowered in ("true", "1", "yes")


def as_int(value: object) -> int:
    """An integer in any spelling of one: digits exactly, however many (float() would round
    99999999999999999999), or an integral number ("1e3", 2.0, a numpy scalar); ValueError otherwise."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    as_float = float(value)  # type: ignore[arg-type]
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise ValueError(f"{value!r} is not an integer")
    return int(as_float)


def parse_int(key: str, text: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = as_int(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected an integer") from None
    return check_range(key, value, minimum, maximum)


def parse_float(key: str, text: str, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected a number") from None
    return check_range(key, value, minimum, maximum)


def parse_text(key: str, text: str) -> str:
    """A value that must not be empty (a name, a path)."""
    if not text.strip():
        raise ValueError(f"{key}= is empty; give a value or leave the key out")
    return text


INT_LIMIT = 2**63 - 1  # the largest integer numpy, torch, Parquet and Ray's config hold


def check_range(key: str, value: float, minimum: float | None = None, maximum: float | None = None) -> float:
    """`value` when finite and within [minimum, maximum] (either may be None); ValueError otherwise."""
    if not isinstance(value, int) and not math.isfinite(value):  # an int is finite (and may be too large for isfinite)
        raise ValueError(f"{key}={value}: expected a finite number")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{key}={value}: must lie between {minimum:,} and {maximum:,}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}={value}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{key}={value}: must be at most {maximum:,}")
    if isinstance(value, int) and abs(value) > INT_LIMIT:
        raise ValueError(f"{key}={value}: too large (at most {INT_LIMIT:,})")
    return value


def say(text: str) -> None:
    """Print one line of prose: on a terminal, wrapped at its width between words (later lines
    indented); elsewhere (a log, a pipe, a test) whole, one line per fact for grep."""
    if sys.stdout.isatty():
        text = textwrap.fill(text, width=shutil.get_terminal_size().columns, subsequent_indent="  ",
                             break_long_words=False, break_on_hyphens=False)
    print(text)


def reject(error: ValueError) -> int:
    """Report bad input as one line on stderr; returns exit code 2 for `sys.exit`."""
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (SIGINT)
TERMINATED = 143  # ... and by SIGTERM (kill, timeout, a batch scheduler)
_terminated: list[int] = []  # SIGTERM has arrived


def interrupted_code() -> int:
    """The exit code of a command stopped by a signal: 143 after SIGTERM, 130 after Ctrl-C."""
    return TERMINATED if _terminated else INTERRUPTED


def starting() -> None:
    """Called by an entry module before its slow imports (Ray, torch: a second or more): a Ctrl-C or
    SIGTERM meanwhile ends the command with one line and its exit code, not a traceback of the
    import under way. Nothing has been done yet, so nothing is lost. `command` ends this phase."""
    signal.signal(signal.SIGTERM, _leave_while_starting)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell has it ignored (cmd &)
        signal.signal(signal.SIGINT, _leave_while_starting)


def _leave_while_starting(signum: int, frame) -> None:
    print("interrupted while starting: nothing was done", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit, not SystemExit: an exception raised here surfaces wherever the import stands, and
    # Python 3.11 wraps one raised inside a class's __set_name__ in a RuntimeError with a traceback
    # (exit 1). Nothing has been done yet, so there is nothing to clean up.
    os._exit(TERMINATED if signum == signal.SIGTERM else INTERRUPTED)


def _terminate_as_interrupt(signum: int, frame) -> None:
    """SIGTERM takes Ctrl-C's path, whoever handles Ctrl-C at the moment: inside Tune's fit() Tune
    stops the trials and saves the experiment; elsewhere KeyboardInterrupt reaches the command's own
    cleanup (the lock, Ray, the resume line). Only the exit code differs (interrupted_code)."""
    _terminated.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # Ctrl-C ignored (a background job of a script): SIGTERM must still stop the command
        raise KeyboardInterrupt


class _ReaderMayLeave:
    """sys.stdout, except that once its reader has gone (`| head -1` has read its line), what is
    printed later is dropped: the command goes on and exits as it would have, without a
    BrokenPipeError traceback (Python) or exit code 1 (rich). Everything else is stdout's own."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        # The descriptor itself, so that the buffered text and Python's flush at exit go nowhere, quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def command(main: Callable[[list[str]], int]) -> NoReturn:
    """Exit with main(sys.argv[1:])'s code, whether or not the reader of stdout read it all. Ctrl-C
    and SIGTERM raise KeyboardInterrupt in main (which cleans up and returns interrupted_code());
    one that main lets through ends the command with a line and that code, without a traceback."""
    if signal.getsignal(signal.SIGINT) is _leave_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    sys.stdout = _ReaderMayLeave(sys.stdout)
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = interrupted_code()
    sys.stdout.flush()  # here, not at exit: a reader gone by now is dropped quietly too
    # Done, and said. A Ctrl-C or SIGTERM from here on (atexit, the modules' teardown: up to a second)
    # would stop nothing that matters, so it is ignored: Python puts its handlers back to the default
    # late in its exit, where such a signal ended the command as killed (130 or 143, no line).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
