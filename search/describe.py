"""`python -m search.run list`: every space with its parameters and ranges."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution, FloatDistribution
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Domain
from rich.table import Table

import spaces
from results.show import wide_console


def describe(value: object) -> str:
    """A Tune domain (or a fixed value) in one line, e.g. "log-uniform [0.0001, 0.003]", read as the
    Optuna distribution the searcher samples it from (bounds inclusive, as Optuna's are)."""
    if not isinstance(value, Domain):
        return f"fixed {value!r}"
    distribution = OptunaSearch.convert_search_space({"value": value})["value"]
    if isinstance(distribution, CategoricalDistribution):
        return "one of " + " | ".join(map(str, distribution.choices))  # "|": choices such as "64,128" hold commas
    kind = ("log-" if distribution.log else "") + ("uniform" if isinstance(distribution, FloatDistribution) else "integer")
    step = f" in steps of {distribution.step:g}" if distribution.step not in (None, 1) else ""
    return f"{kind} [{distribution.low:g}, {distribution.high:g}]{step}"


def print_spaces() -> None:
    console = wide_console()  # no trailing spaces, and as wide as the lines need in a file
    for i, (name, space) in enumerate(spaces.SPACES.items()):
        gap = "\n" if i else ""  # a blank line between spaces, none before the first
        console.print(f"{gap}[bold]{name}[/] (from preset {space.PRESET}): {' '.join(space.__doc__.split())}")
        table = Table("parameter", "range")
        for key, value in space.PARAMS.items():
            table.add_row(key, describe(value))
        console.print(table)
