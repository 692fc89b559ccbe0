"""ASHA that judges trials fairly and whose rungs survive an interrupted search.

Fair rungs. A one-cycle or cosine trial judged at epoch 3 of a 30-epoch schedule is still at a high
learning rate (one-cycle is still warming up): its accuracy there says little about where it ends,
while a constant-rate trial is already near its plateau. Plain ASHA therefore stops schedules that
end better in favour of ones that end worse (short-horizon bias). `FairASHA` compares a trial only
with trials of the same learning-rate schedule: one ASHA per schedule, each with its own rungs, so
every schedule keeps the top 1/eta of its own trials at each rung, and the searcher (which sees
only complete trials as complete) decides between schedules on full-length results. A space that
does not vary the schedule gets exactly plain ASHA. Alternatives weighed: defining schedules on
the rung budgets (restarts at each rung) changes what a trial trains; a schedule-free optimizer
drops the schedules that train best here; searching the schedule only without early stopping
spends a full budget on every configuration.

Rungs that survive. Ray does not save an ASHAScheduler's rungs across Tuner.restore
(ray-project/ray#30838): a resumed search would start with empty rungs and let through trials an
uninterrupted one stops. `RungKeeper` is a Tune callback whose state (the rungs of every group)
Tune writes with every experiment snapshot, next to the searcher's, and hands back on restore. It
holds the scheduler itself: both are pickled together in tuner.pkl, so after a restore they are
still the same object.
"""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from results.schema import write_json
from internals import asha_rungs

RUNGS_FILE = "rungs.json"
GROUP_BY = "schedule"  # the config key whose trials are compared only among themselves

# One {"group": schedule, "milestone": epochs, "recorded": {trial_id: metric * sign}} per rung and group.
Rungs = list[dict]


class FairASHA(FIFOScheduler):
    """One ASHA (one bracket, rungs at grace * eta^k epochs) per value of config[GROUP_BY]."""

    def __init__(self, max_epochs: int, grace: int, eta: int) -> None:
        if grace > max_epochs:
            raise ValueError(f"grace={grace} exceeds max_epochs={max_epochs}: ASHA would never stop a trial")
        super().__init__()
        self.max_epochs, self.grace, self.eta = max_epochs, grace, eta
        self.groups: dict[str, ASHAScheduler] = {}  # public on purpose: the rungs, per group
        self._group_of: dict[str, str] = {}  # trial id -> group
        self._mode: str | None = None  # this class's own: Ray's FIFOScheduler keeps a metric, no mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        # Ray's own method keeps the metric (the public .metric); set once, as Tune expects of a scheduler.
        if self._mode is not None or not super().set_search_properties(metric, mode, **spec):
            return False
        self._mode = mode
        for asha in self.groups.values():  # groups a restore re-created before Tune set these
            asha.set_search_properties(metric, mode)
        return True

    def group(self, name: str) -> ASHAScheduler:
        if name not in self.groups:
            self.groups[name] = ASHAScheduler(
                time_attr="training_iteration", metric=self.metric, mode=self._mode, max_t=self.max_epochs,
                grace_period=self.grace, reduction_factor=self.eta,
            )
        return self.groups[name]

    def on_trial_add(self, tune_controller, trial) -> None:
        name = str(trial.config.get(GROUP_BY, ""))
        self._group_of[trial.trial_id] = name
        self.group(name).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)
        self._group_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)
        self._group_of.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "FairASHA: " + "; ".join(f"{name}: {s.debug_string()}" for name, s in self.groups.items())

    def _of(self, trial) -> ASHAScheduler:
        return self.groups[self._group_of[trial.trial_id]]


def make_scheduler(max_epochs: int, grace: int, eta: int) -> FairASHA:
    """ASHA on epochs (one result per epoch), fair between schedules; metric and mode come from TuneConfig."""
    return FairASHA(max_epochs, grace, eta)


def rungs(scheduler: FairASHA) -> Rungs:
    """The recorded values per group and rung, lowest milestone first."""
    return [
        {"group": name, "milestone": int(m), "recorded": dict(rec)}
        for name, asha in scheduler.groups.items()
        for m, rec in reversed(asha_rungs(asha))
    ]


def set_rungs(scheduler: FairASHA, state: Rungs) -> None:
    for rung in state:
        by_milestone = {int(m): rec for m, rec in asha_rungs(scheduler.group(rung["group"]))}
        if rung["milestone"] not in by_milestone:
            raise ValueError("saved ASHA rungs do not match this scheduler's milestones")
        by_milestone[rung["milestone"]].clear()
        by_milestone[rung["milestone"]].update(rung["recorded"])


class RungKeeper(Callback):
    def __init__(self, scheduler: FairASHA, experiment: str) -> None:
        self.scheduler = scheduler
        self.experiment = experiment  # where rungs.json goes at the end: why each trial was stopped

    def get_state(self) -> dict:
        return {"rungs": rungs(self.scheduler)}

    def set_state(self, state: dict) -> None:
        set_rungs(self.scheduler, state["rungs"])

    def on_experiment_end(self, trials: list, **info) -> None:
        write_json(rungs(self.scheduler), f"{self.experiment}/{RUNGS_FILE}")

