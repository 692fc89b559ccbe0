"""Named choices (search spaces, model presets, budgets): one lookup and one error message for all.

    SPACES = Registry("space", {"seed": seed, "full": full})
    SPACES.lookup("full")      # the entry
    SPACES.lookup("nope")      # ValueError: unknown space 'nope'; choose one of seed, full
    list(SPACES), SPACES["full"], SPACES.items()   # a read-only mapping, in the order given

In model/, the lowest layer, because model/ (presets) must not import search/ or spaces/.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Registry(Mapping[str, T], Generic[T]):
    kind: str  # what an entry is, for the error message: "space", "preset", "budget"
    entries: Mapping[str, T]

    def lookup(self, name: str) -> T:
        """The entry called `name`; ValueError listing the names otherwise (a user's bad input)."""
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.entries)}")
        return self.entries[name]

    def __getitem__(self, name: str) -> T:
        return self.entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
