"""Where experiments live: a local folder or a URI (s3://, gs://, file://), checked before use.

A relative local path means the folder under the command's working directory. It is resolved
here, once, into the absolute path that Tune needs (Tuner and Tuner.restore both fail inside
pyarrow on a relative one: "URI has empty scheme"); what the user typed is what run.json records
and what the printed commands repeat, except a leading ~, which is expanded as the user gives it
(results.schema.expand_home).
"""

from __future__ import annotations

import os
import tempfile

import pyarrow.fs as pafs

from results.schema import join, reachable_type

NAME_MAX = 255  # bytes in one file or folder name (ext4, xfs, btrfs, APFS)


def is_uri(location: str) -> bool:
    return "://" in location


def resolve(location: str) -> str:
    """A URI as given (without a trailing /); a local path made absolute."""
    return location.rstrip("/") if is_uri(location) else os.path.abspath(location)


def experiment_path(storage: str, name: str) -> str:
    """The experiment folder `storage`/`name`, resolved."""
    return join(resolve(storage), name)


def check_writable(location: str, key: str | None = None) -> None:
    """ValueError (one line) unless `location` (the value of `key`, if it is one) is, or can be
    created as, a folder this process may write to. Leaves nothing behind. For URIs: that it parses, is
    reachable and is not a file (an object store says whether it may be written only when it is)."""
    named = f"{key}={location}" if key else location
    if not location.strip():
        raise ValueError(f"{key}= is empty; give a folder (or a URI such as s3://BUCKET/runs)")
    if is_uri(location):
        kind = reachable_type(location, named)
        if kind == pafs.FileType.File:
            raise ValueError(f"{named} is a file, not a folder")
        return
    path = resolve(location)
    too_long = next((part for part in path.split(os.sep) if len(os.fsencode(part)) > NAME_MAX), None)
    if too_long is not None:  # os.path.exists would say False, and the first write would fail
        raise ValueError(f"{named}: a folder name of {len(os.fsencode(too_long))} bytes; at most {NAME_MAX} each")
    existing = path
    while not os.path.exists(existing):  # the nearest existing folder above: where it would be made
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ValueError(f"{named} {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{named}: {existing} is not writable by this user")
    try:  # root passes os.access everywhere, /proc and /sys included: a folder made and removed at once
        os.rmdir(tempfile.mkdtemp(prefix=".writable-", dir=existing))
    except OSError as e:
        raise ValueError(f"{named}: cannot make a folder in {existing} ({e.strerror or e})") from None
