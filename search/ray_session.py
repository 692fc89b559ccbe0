"""One way to get a Ray runtime for a command: an embedded local instance, or an existing cluster.

    with ray_session() as info:                      # a private local Ray, gone afterwards
        ...
    with ray_session("auto") / ray_session("10.0.0.5:6379"):   # join a running cluster
        ...

Either way ray.shutdown() runs on exit, also after an exception or Ctrl-C (for a joined cluster
that only disconnects this driver; the cluster keeps running).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HOST_PORT = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


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
    terminal. For an embedded instance RAY_AUTH_MODE is pinned to "disabled" unless the caller's
    environment sets it (a private Ray on loopback, gone afterwards); joining a cluster leaves it
    alone, so a token-authenticated cluster (cluster.yaml) is joined with the node's own settings.
    """
    check_address(address)
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; ray_session() owns its own runtime")
    kwargs: dict[str, Any] = {"log_to_driver": verbose, "include_dashboard": False}
    if address:
        kwargs["address"] = address
    else:
        kwargs["address"] = "local"
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    if not verbose:
        kwargs["logging_level"] = logging.WARNING
    try:
        ray.init(**kwargs)
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
