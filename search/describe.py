"""`python -m search.run list`: every space with its parameters and ranges."""

from __future__ import annotations

from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform
from rich.console import Console
from rich.table import Table

import spaces


def describe(value: object) -> str:
    """A Tune domain (or a fixed value) in one line, e.g. "log-uniform [0.0001, 0.003]"."""
    if not isinstance(value, Domain):
        return f"fixed {value!r}"
    if isinstance(value, Categorical):
        return "one of " + ", ".join(map(str, value.categories))
    log = isinstance(value.get_sampler(), LogUniform)
    kind = ("log-" if log else "") + ("uniform" if isinstance(value, Float) else "integer")
    upper = value.upper - 1 if isinstance(value, Integer) else value.upper  # Tune's randint excludes upper
    return f"{kind} [{value.lower:g}, {upper:g}]"


def print_spaces() -> None:
    console = Console()
    for name, space in spaces.SPACES.items():
        console.print(f"\n[bold]{name}[/] (from preset {space.PRESET}): {' '.join(space.__doc__.split())}")
        table = Table("parameter", "range")
        for key, value in space.PARAMS.items():
            table.add_row(key, describe(value))
        console.print(table)
