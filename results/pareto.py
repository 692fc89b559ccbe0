"""Several objectives at once: the choices of `objective=`, which trials no other trial beats, and
how trials are ordered when none beats the other.

A search optimises val_acc alone (the default) or val_acc against a cost of the network: its
trainable parameters (`params`) or its latency (`latency_ms`, milliseconds per batch of one image on
the trial's device, model.latency). One trial dominates another when it is at least as good on every
objective and better on one; the non-dominated rank of a trial is 0 on the Pareto front, 1 on the
front of what is left without rank 0, and so on (NSGA-II's sorting). Within a rank, trials that lie
apart from their neighbours come first (NSGA-II's crowding distance: the ends of a rank first), then
the more accurate, then the first given: every ordering here is deterministic.

Used by search.strategy.asha (MO-ASHA's rungs), results.load (Experiment.pareto), results.show and
benchmarks/pareto_efficiency.py (the hypervolume); below `search`, so `results` needs nothing of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from results.status import COMPLETED

OBJECTIVES = ("val_acc", "val_acc,params", "val_acc,latency_ms")  # the values objective= takes
DEFAULT_OBJECTIVE = OBJECTIVES[0]
DIRECTIONS = {"val_acc": "max", "params": "min", "latency_ms": "min"}
# The trials table's column of each objective: a trial's value is its last epoch's (results.status).
COLUMNS = {"val_acc": "last_val_acc", "params": "params", "latency_ms": "latency_ms"}


def names(objective: str) -> tuple[str, ...]:
    """("val_acc", "params") for objective="val_acc,params"; ValueError (one line) for any other value."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: choose one of {' | '.join(OBJECTIVES)}")
    return tuple(objective.split(","))


def gains(values, objectives: tuple[str, ...]) -> np.ndarray:
    """[trial, objective] values, signed so that larger is better on every objective."""
    signs = np.array([1.0 if DIRECTIONS[name] == "max" else -1.0 for name in objectives])
    return np.asarray(values, dtype=float).reshape(-1, len(objectives)) * signs


def dominated_by(g: np.ndarray) -> np.ndarray:
    """[i, j]: True where trial j dominates trial i (g: gains, larger is better)."""
    at_least = (g[None, :, :] >= g[:, None, :]).all(axis=2)
    better = (g[None, :, :] > g[:, None, :]).any(axis=2)
    return at_least & better


def ranks(g: np.ndarray) -> np.ndarray:
    """Each trial's non-dominated rank (0: on the front)."""
    beaten = dominated_by(g)
    rank = np.full(len(g), -1)
    left = np.ones(len(g), dtype=bool)
    level = 0
    while left.any():
        now = left & ~(beaten & left[None, :]).any(axis=1)
        rank[now] = level
        left &= ~now
        level += 1
    return rank


def crowding(g: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each trial within its rank: the sum over objectives of the
    gap between its two neighbours, relative to the rank's range; infinite at a rank's ends."""
    distance = np.zeros(len(g))
    for level in np.unique(rank):
        members = np.flatnonzero(rank == level)
        for k in range(g.shape[1]):
            by = members[np.argsort(g[members, k], kind="stable")]
            span = g[by[-1], k] - g[by[0], k]
            distance[by[0]] = distance[by[-1]] = np.inf
            if span > 0 and len(by) > 2:
                distance[by[1:-1]] += (g[by[2:], k] - g[by[:-2], k]) / span
    return distance


def order(g: np.ndarray) -> np.ndarray:
    """Trial indices, best first: by non-dominated rank, then crowding distance (larger first), then
    the first objective, then the index (the first given)."""
    rank = ranks(g)
    spread = crowding(g, rank)
    return np.lexsort((np.arange(len(g)), -g[:, 0], -spread, rank))


def front(trials: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The completed trials that no other completed trial beats on every objective of `objective`,
    most accurate first (ties by trial id). A pruned trial is left out: its values are those of an
    earlier epoch, which say nothing of where it would have ended. For objective=val_acc alone, the
    completed trial(s) with the highest last val_acc."""
    objectives = names(objective)
    columns = [COLUMNS[name] for name in objectives]
    done = trials[(trials["status"] == COMPLETED) & trials[columns].notna().all(axis=1)]
    if done.empty:
        return done.reset_index(drop=True)
    on_front = ranks(gains(done[columns].to_numpy(dtype=float), objectives)) == 0
    return done[on_front].sort_values(["last_val_acc", "trial_id"], ascending=[False, True]).reset_index(drop=True)


def hypervolume(g: np.ndarray, reference: np.ndarray) -> float:
    """The area that two-objective gains `g` dominate beyond `reference` (gains too, worse than any
    point that counts: points not beyond it on both objectives add nothing)."""
    g = np.asarray(g, dtype=float).reshape(-1, 2)
    g = g[(g > reference).all(axis=1)]
    if not len(g):
        return 0.0
    g = g[ranks(g) == 0]
    g = g[np.lexsort((g[:, 1], -g[:, 0]))]  # first objective descending: the second then ascends
    area, floor = 0.0, reference[1]
    for first, second in g:
        if second > floor:
            area += (first - reference[0]) * (second - floor)
            floor = second
    return float(area)
