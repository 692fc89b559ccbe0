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

Several objectives (MO-ASHA, as syne-tune's). With objective=val_acc,params or val_acc,latency_ms
a rung cannot cut at an accuracy percentile: a small network a little less accurate is as much
worth keeping as a large one a little more. `ParetoASHA` keeps ASHA's rungs (grace * eta^k epochs,
Ray's milestones) and its asynchronous rule, one decision when a trial reaches a rung, against the
trials recorded there before it, but ranks the values by non-domination (results.pareto.order:
rank, then crowding distance, then accuracy, then the trial id): a trial goes on when it is
among the first ceil(n / eta) of the n trials recorded at the rung, itself included, as Ray's
ASHA keeps those at or above the (1 - 1/eta) percentile (the first trial at a rung always goes on).
Fair groups and RungKeeper work as for one objective: one ParetoASHA per schedule, and its rungs,
{trial_id: [value per objective]}, saved and restored the same way.

Probes. The first trials of a search are TPE's random start-up: drawn only to give its model
something to start from, they seldom end best (random + FIFO's best of 64 trials is the target TPE
beats). Each runs to the second rung (grace * eta epochs) and stops there, wherever it stands: its
accuracy there is what TPE learns from, and the rung keeps it as a yardstick. Before, the first
trial at each schedule's rungs went on unopposed, so about half the start-up ran to max_epochs. On
the replay of both CPU records (benchmarks/search_efficiency.py, 100 seeds, docs/replay.md) probes
reached random + FIFO's final best in 0.27 and 0.26 of its device-time, against 0.35 and 0.27.
`probes` is given by whoever knows the start-up (search.strategy.searcher.probes: none when the search
has no more trials than that, when a warm start fills it, or with several objectives, where the
replay showed no gain); which trials are probes is saved with the rungs.
"""

from __future__ import annotations

import math

import numpy as np
from ray.tune import Callback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from results import pareto
from results.schema import write_json
from internals import asha_rungs

RUNGS_FILE = "rungs.json"
GROUP_BY = "schedule"  # the config key whose trials are compared only among themselves

# One {"group": schedule, "milestone": epochs, "recorded": {trial_id: value}} per rung and group;
# value: metric * sign for one objective (Ray's ASHA), [value per objective] as reported for several.
# rungs.json adds "probes": [trial_id] to each, the probes among the recorded (explained).
Rungs = list[dict]


class ParetoASHA:
    """One group's MO-ASHA (module docstring): the calls FairASHA makes of a group's scheduler."""

    def __init__(self, max_epochs: int, grace: int, eta: int, objectives: tuple[str, ...]) -> None:
        self.max_epochs, self.eta, self.objectives = max_epochs, eta, objectives
        count = int(np.log(max_epochs / grace) / np.log(eta) + 1)  # Ray's _Bracket: the same milestones
        # [(milestone, {trial_id: [value per objective]})], highest milestone first, as Ray's bracket keeps them.
        self.rungs: list[tuple[int, dict[str, list[float]]]] = [(grace * eta**k, {}) for k in reversed(range(count))]

    def on_trial_add(self, tune_controller, trial) -> None:
        pass

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if TRAINING_ITERATION not in result or any(name not in result for name in self.objectives):
            return TrialScheduler.CONTINUE
        epoch = result[TRAINING_ITERATION]
        decision = TrialScheduler.STOP if epoch >= self.max_epochs else TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if epoch < milestone or trial.trial_id in recorded:
                continue
            recorded[trial.trial_id] = [float(result[name]) for name in self.objectives]
            if not self.keeps(recorded, trial.trial_id):
                decision = TrialScheduler.STOP
            break
        return decision

    def keeps(self, recorded: dict[str, list[float]], trial_id: str) -> bool:
        """Whether `trial_id` is among the first ceil(n / eta) of the n trials recorded at a rung."""
        ids = sorted(recorded)  # the last tie-break: the trial id, whatever order the rung was filled in
        best_first = pareto.order(pareto.gains([recorded[t] for t in ids], self.objectives))
        place = list(best_first).index(ids.index(trial_id))
        return place < math.ceil(len(ids) / self.eta)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        pass

    def on_trial_remove(self, tune_controller, trial) -> None:
        pass

    def set_search_properties(self, metric: str | None, mode: str | None) -> bool:
        return True  # the objectives were given when it was made

    def debug_string(self) -> str:
        return "MO-ASHA rungs: " + ", ".join(f"{m}: {len(rec)}" for m, rec in reversed(self.rungs))


class FairASHA(FIFOScheduler):
    """One ASHA (one bracket, rungs at grace * eta^k epochs) per value of config[GROUP_BY]; with
    several objectives, one ParetoASHA per value."""

    objectives: tuple[str, ...] = ()  # several: MO-ASHA on these; else Ray's ASHA on Tune's metric
    probes = 0  # the first trials, stopped at the second rung (module docstring); a scheduler pickled before has none
    probed: tuple[str, ...] = ()  # the ids of the first `probes` trials added (nor has such a scheduler these)

    def __init__(self, max_epochs: int, grace: int, eta: int, objectives: tuple[str, ...] = (), probes: int = 0) -> None:
        if grace > max_epochs:
            raise ValueError(f"grace={grace} exceeds max_epochs={max_epochs}: ASHA would never stop a trial")
        super().__init__()
        self.max_epochs, self.grace, self.eta = max_epochs, grace, eta
        self.objectives = tuple(objectives) if len(objectives) > 1 else ()
        self.groups: dict[str, ASHAScheduler | ParetoASHA] = {}  # public on purpose: the rungs, per group
        self._group_of: dict[str, str] = {}  # trial id -> group
        self._mode: str | None = None  # this class's own: Ray's FIFOScheduler keeps a metric, no mode
        self.probes, self.probe_epochs = probes, grace * eta

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        # Ray's own method keeps the metric (the public .metric); set once, as Tune expects of a scheduler.
        if self._mode is not None or not super().set_search_properties(metric, mode, **spec):
            return False
        self._mode = mode
        for asha in self.groups.values():  # groups a restore re-created before Tune set these
            asha.set_search_properties(metric, mode)
        return True

    def group(self, name: str) -> ASHAScheduler | ParetoASHA:
        if name not in self.groups and self.objectives:
            self.groups[name] = ParetoASHA(self.max_epochs, self.grace, self.eta, self.objectives)
        if name not in self.groups:
            self.groups[name] = ASHAScheduler(
                time_attr="training_iteration", metric=self.metric, mode=self._mode, max_t=self.max_epochs,
                grace_period=self.grace, reduction_factor=self.eta,
            )
        return self.groups[name]

    def on_trial_add(self, tune_controller, trial) -> None:
        name = str(trial.config.get(GROUP_BY, ""))
        self._group_of[trial.trial_id] = name
        if len(self.probed) < self.probes and trial.trial_id not in self.probed:
            self.probed = (*self.probed, trial.trial_id)
        self.group(name).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = self._of(trial).on_trial_result(tune_controller, trial, result)  # recorded at its rung
        probe = trial.trial_id in self.probed
        return TrialScheduler.STOP if probe and result.get(TRAINING_ITERATION, 0) >= self.probe_epochs else decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)
        self._group_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)
        self._group_of.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "FairASHA: " + "; ".join(f"{name}: {s.debug_string()}" for name, s in self.groups.items())

    def _of(self, trial) -> ASHAScheduler | ParetoASHA:
        return self.groups[self._group_of[trial.trial_id]]


def make_scheduler(max_epochs: int, grace: int, eta: int, objectives: tuple[str, ...] = (), probes: int = 0) -> FairASHA:
    """ASHA on epochs (one result per epoch), fair between schedules; metric and mode come from
    TuneConfig. objectives: two or more (results.pareto) make it MO-ASHA on them; probes: the first
    trials, stopped at the second rung (the module's docstring)."""
    return FairASHA(max_epochs, grace, eta, objectives, probes)


def _rungs_of(group: ASHAScheduler | ParetoASHA) -> list[tuple[float, dict]]:
    """A group's live (milestone, recorded) pairs, highest milestone first."""
    return group.rungs if isinstance(group, ParetoASHA) else asha_rungs(group)


def rungs(scheduler: FairASHA) -> Rungs:
    """The recorded values per group and rung, lowest milestone first."""
    return [
        {"group": name, "milestone": int(m), "recorded": dict(rec)}
        for name, asha in scheduler.groups.items()
        for m, rec in reversed(_rungs_of(asha))
    ]


def explained(scheduler: FairASHA) -> Rungs:
    """What rungs.json holds: the rungs, and at each the trials recorded there that are probes, so
    that a reader can tell a probe stopped at the second rung, whatever its rank there, from a trial
    the rung cut."""
    return [{**rung, "probes": [t for t in rung["recorded"] if t in scheduler.probed]} for rung in rungs(scheduler)]


def set_rungs(scheduler: FairASHA, state: Rungs) -> None:
    for rung in state:
        by_milestone = {int(m): rec for m, rec in _rungs_of(scheduler.group(rung["group"]))}
        if rung["milestone"] not in by_milestone:
            raise ValueError("saved ASHA rungs do not match this scheduler's milestones")
        by_milestone[rung["milestone"]].clear()
        by_milestone[rung["milestone"]].update(rung["recorded"])


class RungKeeper(Callback):
    def __init__(self, scheduler: FairASHA, experiment: str) -> None:
        self.scheduler = scheduler
        self.experiment = experiment  # where rungs.json goes at the end: why each trial was stopped

    def get_state(self) -> dict:
        return {"rungs": rungs(self.scheduler), "probed": list(self.scheduler.probed)}

    def set_state(self, state: dict) -> None:
        set_rungs(self.scheduler, state["rungs"])
        # Replaced, not added to: Tune may re-add the restored trials first. A snapshot from before probes has none.
        self.scheduler.probed = tuple(state.get("probed", ()))

    def on_experiment_end(self, trials: list, **info) -> None:
        write_json(explained(self.scheduler), f"{self.experiment}/{RUNGS_FILE}")

