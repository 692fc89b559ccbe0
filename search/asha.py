"""ASHA whose rungs survive an interrupted search.

Ray does not save ASHAScheduler's rung state across Tuner.restore (ray-project/ray#30838): a
resumed search would start with empty rungs and let through trials an uninterrupted one stops.
`RungKeeper` is a Tune callback whose state (the rungs) Tune writes with every experiment
snapshot, next to the searcher's, and hands back on restore. It holds the scheduler itself: both
are pickled together in tuner.pkl, so after a restore they are still the same object.
"""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler

from results.schema import write_json

RUNGS_FILE = "rungs.json"

Rungs = list[dict]  # one {"milestone": epochs, "recorded": {trial_id: metric * sign}} per rung


def make_scheduler(max_epochs: int, grace: int, eta: int) -> ASHAScheduler:
    """ASHA on epochs (one result per epoch); metric and mode come from TuneConfig."""
    if grace > max_epochs:
        raise ValueError(f"grace={grace} exceeds max_epochs={max_epochs}: ASHA would never stop a trial")
    return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=grace, reduction_factor=eta)


def rungs(scheduler: ASHAScheduler) -> Rungs:
    """The recorded values per rung, lowest milestone first (one bracket, as make_scheduler builds)."""
    (bracket,) = scheduler._brackets
    return [{"milestone": int(m), "recorded": dict(rec)} for m, rec in reversed(bracket._rungs)]


def set_rungs(scheduler: ASHAScheduler, state: Rungs) -> None:
    (bracket,) = scheduler._brackets
    by_milestone = {int(m): rec for m, rec in bracket._rungs}
    if set(by_milestone) != {r["milestone"] for r in state}:
        raise ValueError("saved ASHA rungs do not match this scheduler's milestones")
    for rung in state:
        by_milestone[rung["milestone"]].clear()
        by_milestone[rung["milestone"]].update(rung["recorded"])


class RungKeeper(Callback):
    def __init__(self, scheduler: ASHAScheduler, experiment: str) -> None:
        self.scheduler = scheduler
        self.experiment = experiment  # where rungs.json goes at the end: why each trial was stopped

    def get_state(self) -> dict:
        return {"rungs": rungs(self.scheduler)}

    def set_state(self, state: dict) -> None:
        set_rungs(self.scheduler, state["rungs"])

    def on_experiment_end(self, trials: list, **info) -> None:
        write_json(rungs(self.scheduler), f"{self.experiment}/{RUNGS_FILE}")
