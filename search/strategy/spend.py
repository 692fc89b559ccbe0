"""Device-hours as a budget: `gpu_hours=H` (or `cpu_hours=H` for a CPU search).

A trial holding g GPUs for an epoch of s seconds spends g x s GPU-seconds. The search starts no
trial that the rest of the budget cannot pay to its first rung (estimated from the mean epoch so
far), and stops every running trial once the budget is spent. The searcher owns a `DeviceSpend`
(it sees every result, and Tune saves and restores it with the searcher's state), and
`SpendStopper` asks the searcher: the searcher object survives a restore (Tune updates its
attributes in place), so the stopper pickled with the Tuner still reads the live figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ray.tune.stopper import Stopper


@dataclass
class DeviceSpend:
    limit_seconds: float  # math.inf: no budget
    devices_per_trial: float  # GPUs a trial holds (CPUs for a CPU search)
    spent_seconds: float = 0.0  # device-seconds so far
    epochs: int = 0  # epochs paid for so far

    def add_epoch(self, seconds: float) -> None:
        self.spent_seconds += seconds * self.devices_per_trial
        self.epochs += 1

    @property
    def exhausted(self) -> bool:
        return self.spent_seconds >= self.limit_seconds

    def affords(self, epochs: int) -> bool:
        """Whether what is left pays for `epochs` more epochs of an average trial (before the first
        epoch is known: whether anything is left)."""
        if self.exhausted or not self.epochs:
            return not self.exhausted
        mean = self.spent_seconds / self.epochs
        return self.limit_seconds - self.spent_seconds >= epochs * mean

    @property
    def hours(self) -> float:
        return self.spent_seconds / 3600


def unlimited(devices_per_trial: float) -> DeviceSpend:
    return DeviceSpend(math.inf, devices_per_trial)


class SpendStopper(Stopper):
    """Stops the whole search once `owner.spend` is exhausted; `owner` is the searcher."""

    def __init__(self, owner) -> None:
        self.owner = owner

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.owner.spend.exhausted
