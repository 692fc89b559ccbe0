"""Hydra-style `key=value` command lines, without Hydra: one parser for every entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def parse(argv: Iterable[str], valid_keys: Iterable[str]) -> dict[str, str]:
    """{key: raw text}; ValueError (one line, listing what is accepted) on a malformed or unknown key."""
    valid = list(valid_keys)
    out: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ValueError(f"{arg!r} is not key=value; valid keys: {', '.join(valid)}")
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


def parse_int(key: str, text: str, minimum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected an integer") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}={value}: must be at least {minimum}")
    return value


def parse_float(key: str, text: str, minimum: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected a number") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}={value}: must be at least {minimum}")
    return value


def reject(error: ValueError) -> int:
    """Report bad input as one line on stderr; returns exit code 2 for `sys.exit`."""
    print(f"error: {error}", file=sys.stderr)
    return 2
