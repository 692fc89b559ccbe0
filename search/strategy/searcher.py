"""Ray's OptunaSearch with a study that tells the truth, refusals, a device budget, and its study on disk.

Ray's stock OptunaSearch tells Optuna that a trial ASHA stopped at epoch 2 is COMPLETE with its
epoch-2 accuracy. Here the study holds what happened: every epoch's value reaches Optuna as an
intermediate value (the one that triggered the stop included), and a trial that ended before
`max_epochs` without error is told as PRUNED (results.status decides, as for the result tables),
so optuna-dashboard and the tables agree. What TPE ranks is another matter: it sees a stopped
trial by its accuracy at the stop, as the stock search tells it (TPEWithRefusals, which says why).

With `journal` (a local file, search.strategy.study.journal_path(experiment)), the study lives in Optuna's
journal storage: optuna-dashboard and optuna.load_study read it while the search runs and after.
Tune snapshots the searcher (save) with the rest of the experiment and restores it after Ctrl-C, a
crash or SIGKILL (restore). By then the journal may hold more than the snapshot: trials asked,
epochs reported and trials told after it, which the restored Tune does not know and runs again. So
the snapshot carries the journal as it was, and a restore puts it back: study and Tune agree.

Constraints and money. With `max_params`, a suggested network above it is never handed to Tune:
it is told to Optuna as PRUNED with user attributes refused=True and its parameter count (the excess
also as a violated constraint, Trial.set_constraint), and another configuration is asked for
instead. TPE (TPEWithRefusals) takes a refusal for a bad example and nothing more: it counts towards
neither the random start-up nor the good set, so a refusal is not a trial, yet TPE learns to avoid
the region. The same mechanism, Optuna's constant liar, spreads the suggestions made while other
trials run. With a device budget (`spend`, search.strategy.spend) it starts no trial the rest cannot pay for
to the first rung, and counts each epoch's device-seconds once (a resumed trial repeats epochs);
search.strategy.spend.SpendStopper ends the search once the budget is spent.

Staged trials (`slots`: trials that run at once, fewer than Tune's max_concurrent_trials). In each
step of its loop Tune first asks the searcher for trials until its queue is full, and only then
hands the actors that trials have freed to the waiting trials. So when a trial ends, the freed
slot would wait for TPE's next suggestion (14 ms with space=full's 23 parameters) although a
staged trial stands ready. Once a trial has ended, the first suggest() that finds a staged trial
ready for the slot (at least `slots` trials still live) returns None, "not now": that step hands
the slot to the staged trial, and the next step makes the suggestion.

Several objectives (objective=val_acc,params or val_acc,latency_ms; results.pareto). The study
gets a direction per objective and Optuna's TPE its multi-objective split; Tune's metric stays
val_acc. Trial.report raises in such a study (optuna/optuna#3450), so no epoch reaches Optuna: a
completed trial is told its values at its last epoch, and a trial MO-ASHA stopped is told PRUNED,
its values at the stop kept as the user attribute "stopped". TPE sees such a trial COMPLETE with
those values, as stock OptunaSearch tells it (TPEWithRefusals): its good set is filled by
non-dominated rank (ties broken by hypervolume contribution), stopped trials among the rest. Seen
as PRUNED, which Optuna scores by a last intermediate value that a multi-objective study cannot
hold, they would all tie and fill only what is left of the good set, oldest first. Seen COMPLETE,
the smallest networks stopped at their first rung stand on TPE's front whatever their one-epoch
accuracy (nothing is smaller), and yet on the replay of both CPU records (60 seeds each,
benchmarks/pareto_efficiency.py, docs/replay.md) the fronts found that way were better, by more
than the seeds' noise. Refusals and the constant liar work unchanged: TPE puts running (and
refused) trials in the bad set in both splits, and counts neither.
"""

from __future__ import annotations

import math
import os
import pickle
import uuid
import warnings
from collections.abc import Sequence
from functools import partial

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

import internals
from model.config import Config
from model.net import parameters_of
from results import pareto
from results.status import ran_to_the_end
from search.settings import draw_config
from search.strategy import study
from search.strategy.spend import DeviceSpend, unlimited

# User attributes of an Optuna trial; stopped: {"epoch", objective: value, ...} of a trial MO-ASHA stopped.
PARAMS_ATTR, REFUSED_ATTR, STOPPED_ATTR = "params", "refused", "stopped"
MAX_REFUSALS = 1000  # suggestions in a row above max_params before the search gives up on the space
STARTUP_TRIALS = 10  # trials TPE draws at random before it models the results (Optuna's default)
GOOD_SHARE = 0.05  # of the trials TPE has seen, the best ones that form its good set (Optuna's default: 0.10)


def probes(trials: int, warm: int = 0, objectives: Sequence[str] = ()) -> int:
    """The trials of a search that TPE draws at random, which its scheduler stops at the second rung
    (search.strategy.asha, Probes): the start-up less the `warm` trials that count towards it; none
    when the search has no more `trials` than that (its best is then one of them), and none with
    several objectives: on the replay (benchmarks/pareto_efficiency.py, 60 seeds) MO-ASHA's fronts
    were level with probes on the 12-epoch record (hypervolume 1.512 against 1.508) and worse on
    the 8-epoch one (1.501 against 1.571)."""
    drawn = max(0, STARTUP_TRIALS - warm)
    return drawn if trials > drawn and len(objectives) < 2 else 0


def good_set(seen: int) -> int:
    """TPE's good-set size (Optuna's `gamma`) for one objective: the best 5% of the `seen` trials,
    at least one, at most 25 (Optuna's cap). Optuna's default, 10%, models a good region twice as
    wide. On the replay of both CPU records, 100 seeds each (benchmarks/search_efficiency.py,
    docs/replay.md), 5% ended with better networks in the same device-time, and by more than the
    seeds' noise: IQM of the best found 0.801 against 0.788 (12 epochs) and 0.796 against 0.777 (8
    epochs), the intervals apart. It reached random + FIFO's final best about as soon: in 0.29 and
    0.24 of its device-time, against 0.28 and 0.26. A good set of 3% was no better, and 20% was
    much worse: a third of the seeds never got there. Up to 20 trials seen the good set is one
    trial (Optuna's: two from 11 on); a floor of two got to the target later on the 12-epoch
    record (0.33). Several objectives keep Optuna's default: unmeasured there. Optuna deprecates
    `gamma` since 4.9 and will remove it in 6 (pyproject pins optuna<6)."""
    return min(math.ceil(GOOD_SHARE * seen), 25)


class TPEWithRefusals(optuna.samplers.TPESampler):
    """Optuna's multivariate TPE, for which a refused suggestion is a bad example and nothing more,
    and a trial ASHA stopped counts by its accuracy at the stop.

    Refusals. Optuna counts every COMPLETE and PRUNED trial towards n_startup_trials and towards the
    size of its good set, and fills a good set that feasible trials cannot fill with the
    least-infeasible ones. Told as PRUNED with a violated constraint, ten refusals would end the
    random start-up before any network had trained, and the good set would be made of refusals.
    Here TPE sees a refused trial the way its constant liar sees a trial still running
    (internals.study_seen_as): always among the bad, never counted. So the first n_startup_trials
    accepted trials are drawn at random, the good set is made of accepted trials and sized by their
    number alone, and the refusals weigh on the bad set's density, so that TPE's proposals move away
    from networks too large. Hiding refusals from TPE altogether (sample-and-reject alone) is not
    enough: TPE then proposes the same too-large network again after each refusal (on a made-up
    space it gave up after 1000 refusals in a row). constant_liar is set here rather than left to
    Optuna's default (True since Optuna 5.0): without it TPE never reads running trials, so
    refusals would vanish from it too, and trials suggested side by side would crowd together.

    Stopped trials. The study keeps a trial ASHA stopped as PRUNED (the truth, for its readers), and
    Optuna's TPE would rank PRUNED trials below every COMPLETE one and among themselves by how far
    they got before their accuracy. TPE sees it instead as COMPLETE with its last intermediate
    value, its accuracy at the stop, as Ray's stock OptunaSearch tells it. On the replay of both CPU
    records that reached random + FIFO's final best sooner: in 0.29 of its device-time against
    0.36 (12 epochs), 0.24 against 0.25 (8 epochs), 40 seeds each, intervals overlapping
    (benchmarks/search_efficiency.py, docs/replay.md). A multi-objective study holds no
    intermediate values (HonestOptunaSearch): TPE sees its stopped trials COMPLETE with the values
    at the stop that their "stopped" attribute keeps (the module's docstring says why).

    The good set. With one objective it is the best 5% of the trials TPE sees, not Optuna's 10%
    (good_set says why).

    With no refusal and no stopped trial, this is Optuna's TPESampler as configured here, trial for
    trial."""

    objectives: tuple[str, ...] = ()  # several: their names, in the study's order (a sampler pickled before has none)

    def __init__(self, *, seed: int, n_startup_trials: int, objectives: tuple[str, ...] = ()) -> None:
        self.objectives = tuple(objectives) if len(objectives) > 1 else ()
        narrower = {} if self.objectives else {"gamma": good_set}  # several: Optuna's default (good_set)
        with warnings.catch_warnings():
            # Deprecated since Optuna 4.9, with no replacement, to be removed in 6 (pyproject: optuna<6); the
            # FutureWarning would reach every search's console.
            warnings.simplefilter("ignore", FutureWarning)
            super().__init__(seed=seed, multivariate=True, n_startup_trials=n_startup_trials, constant_liar=True,
                             **narrower)

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(self.seen(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(self.seen(study), trial, param_name, param_distribution)

    def seen(self, study: optuna.Study) -> optuna.Study:
        """The study as TPE sees it: refusals as running trials, stopped trials COMPLETE at the stop."""
        return internals.study_seen_as(study, partial(_as_tpe_sees, names=self.objectives))


def _as_tpe_sees(trial: optuna.trial.FrozenTrial, names: Sequence[str]) -> tuple[TrialState, list[float] | None] | None:
    """How TPEWithRefusals shows a finished trial to TPE, when not as it is: (state, values). A
    stopped trial's values at the stop: its last intermediate value (one objective), or the
    objectives `names` of its "stopped" attribute (several; one objective: none)."""
    if trial.user_attrs.get(REFUSED_ATTR):
        return TrialState.RUNNING, None
    if trial.state != TrialState.PRUNED:
        return None
    if trial.intermediate_values:
        return TrialState.COMPLETE, [trial.intermediate_values[max(trial.intermediate_values)]]
    stopped = trial.user_attrs.get(STOPPED_ATTR, {})
    if names and all(name in stopped for name in names):
        return TrialState.COMPLETE, [stopped[name] for name in names]
    return None


class HonestOptunaSearch(OptunaSearch):
    journal: str | None = None  # the study's journal file; None: in memory, inside Tune's snapshots only
    objectives: tuple[str, ...] = ()  # several: a multi-objective study (a searcher pickled before has none)
    slots: int | None = None  # trials that run at once; None: as many as Tune allows (nothing staged)
    _live = 0  # trials suggested and not yet ended
    _freed = False  # a trial has ended since the last suggestion

    def __init__(
        self, *, max_epochs: int, seed: int, metric: str | None = None, mode: str | None = None,
        journal: str | os.PathLike | None = None, base: dict | None = None, max_params: int | None = None,
        spend: DeviceSpend | None = None, first_rung: int = 1, startup_trials: int = STARTUP_TRIALS,
        warm: tuple[optuna.trial.FrozenTrial, ...] = (), objectives: tuple[str, ...] = (), slots: int | None = None,
    ) -> None:
        """metric and mode: give them here or in TuneConfig, not both (Tune refuses two sources).
        base: the fixed values of the trial config (what a suggestion is applied to, to count a
        network's parameters); first_rung: the epochs a new trial must be able to pay for;
        startup_trials: trials drawn at random before TPE models the results (Optuna's default, 10;
        refused suggestions do not count); warm: finished trials of earlier searches
        (search.strategy.warm), added to a new study before the first suggestion; objectives: two
        or more (results.pareto) make the study multi-objective on them, whatever Tune's metric;
        slots: trials that run at once, when Tune may hold more (staged; see the module's docstring)."""
        sampler = TPEWithRefusals(seed=seed, n_startup_trials=startup_trials, objectives=tuple(objectives))
        super().__init__(metric=metric, mode=mode, sampler=sampler, study_name=study.STUDY_NAME)
        self.max_epochs = max_epochs
        self.journal = os.path.abspath(journal) if journal is not None else None
        self.base, self.max_params = dict(base or {}), max_params
        self.spend, self.first_rung = spend or unlimited(1.0), first_rung
        self.warm = warm  # emptied once in the study: Tune's snapshots carry the study, not these
        self.objectives = tuple(objectives) if len(objectives) > 1 else ()
        self.slots = slots
        self.refused = 0  # suggestions refused for max_params so far
        self._last_step: dict[str, int] = {}  # trial id -> last epoch told to Optuna (resumes repeat epochs)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        # Here, not in __init__: the searcher is built before Tune creates the experiment folder.
        if self.journal is not None:
            os.makedirs(os.path.dirname(self.journal), exist_ok=True)
            internals.use_storage(self, study.storage(self.journal))
        if self.objectives:  # Tune's one metric stays Tune's; the study gets a direction per objective
            metric, mode = list(self.objectives), [pareto.DIRECTIONS[name] for name in self.objectives]
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        # optuna-dashboard labels its axes val_acc, not "Objective Value". Experimental since Optuna
        # 3.2 (still in 5), and says so on every search's console unless hushed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names(list(self._names))
        if self.warm and not self.study.trials:  # a new study (a journal left by a first attempt has them)
            self.study.add_trials(self.warm)
        self.warm = ()
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self.spend.affords(self.first_rung):
            return Searcher.FINISHED  # the device budget cannot pay for another trial's first rung
        freed, self._freed = self._freed, False
        if freed and self.slots is not None and self._live >= self.slots:
            return None  # a staged trial takes the freed slot in this step; the suggestion comes in the next
        for _ in range(MAX_REFUSALS):
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            trial = internals.optuna_trial(self, trial_id)
            if self.max_params is None or self._small_enough(trial, config):  # None: no network is built here
                trial.set_user_attr(study.TRIAL_ID, trial_id)
                self._live += 1
                return config
            trial.set_user_attr(REFUSED_ATTR, True)
            internals.optuna_study(self).tell(trial, state=TrialState.PRUNED)
            internals.forget_trial(self, trial_id)  # the next ask() gets the Tune trial a new Optuna trial
            self.refused += 1
        raise ValueError(f"{MAX_REFUSALS} suggestions in a row exceed max_params={self.max_params}: the space has too few smaller networks")

    def _small_enough(self, trial: optuna.Trial, config: dict) -> bool:
        """Whether the network of `config` has at most max_params parameters; its count goes on the
        Optuna trial, and to TPE as a constraint (feasible at <= 0)."""
        params = parameters_of(Config.from_flat({**self.base, **config}))
        trial.set_user_attr(PARAMS_ATTR, params)
        trial.set_constraint(PARAMS_ATTR, params - self.max_params)
        return params <= self.max_params

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in internals.told(self):
            return
        self._live, self._freed = max(self._live - 1, 0), True
        if result and not error:
            self._report(trial_id, result)  # Tune skips the searcher for the result that stopped the trial
        epochs = (result or {}).get(TRAINING_ITERATION, 0)
        trial = internals.optuna_trial(self, trial_id)
        if error:
            internals.optuna_study(self).tell(trial, state=TrialState.FAIL)
        elif result and ran_to_the_end(epochs, self.max_epochs):
            values = [result[name] for name in self._names]
            internals.optuna_study(self).tell(trial, values if self.objectives else values[0])
        else:  # one objective: Optuna keeps the last intermediate value as a pruned trial's value
            if self.objectives and result:  # several: no intermediate values; the stop's, what TPE sees (and readers)
                trial.set_user_attr(STOPPED_ATTR, {"epoch": epochs, **{name: result[name] for name in self._names}})
            internals.optuna_study(self).tell(trial, state=TrialState.PRUNED)
        internals.told(self).add(trial_id)

    def _report(self, trial_id: str, result: dict) -> None:
        if trial_id in internals.told(self) or any(name not in result for name in self._names):
            return
        step = result[TRAINING_ITERATION]
        if step > self._last_step.get(trial_id, 0):
            if not self.objectives:  # Trial.report raises in a multi-objective study (optuna/optuna#3450)
                internals.optuna_trial(self, trial_id).report(result[self.metric], step)
            self._last_step[trial_id] = step
            self.spend.add_epoch(result.get("seconds", 0.0))

    @property
    def _names(self) -> tuple[str, ...]:
        """The values Optuna is told: the objectives, or Tune's one metric."""
        return self.objectives or (self.metric,)

    def save(self, checkpoint_path: str) -> None:
        """Tune's snapshot of the searcher: its attributes, and the journal's bytes as they are now."""
        state = dict(self.__dict__)
        if self.journal is not None:
            with open(self.journal, "rb") as f:
                state["journal_bytes"] = f.read()
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        """Back to the snapshot, the journal included: what was written after it is gone from both.
        The journal goes where this session keeps it (self.journal, which the engine may point at
        the experiment's new folder), not where the snapshot's session did."""
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        journal_bytes = state.pop("journal_bytes", None)
        journal = self.journal or state.get("journal")
        self.__dict__.update(state)
        if journal_bytes is not None:
            self.journal = journal
            _replace(journal, journal_bytes)
            internals.point_journal(internals.optuna_study(self), study.DriverJournal(journal))

    @property
    def study(self) -> optuna.Study:
        return internals.optuna_study(self)


def _replace(path: str, content: bytes) -> None:
    """Write `content` to `path` atomically: a reader (optuna-dashboard) sees the old or the new file."""
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def check_max_params(space: dict, max_params: int, seed: int) -> None:
    """ValueError (one line) unless one of MAX_REFUSALS configurations drawn at random from `space`
    (a Tune param space) has at most `max_params` parameters: the searcher would give up after as
    many refusals in a row, once Ray had started and the experiment was written."""
    rng = np.random.default_rng(seed)
    smallest = None
    for _ in range(MAX_REFUSALS):
        params = parameters_of(Config.from_flat(draw_config(space, rng)))
        if params <= max_params:
            return
        smallest = params if smallest is None else min(smallest, params)
    raise ValueError(f"max_params={max_params:,}: none of {MAX_REFUSALS:,} networks drawn from this space has so few "
                     f"parameters (the smallest has {smallest:,}); give a larger max_params, or none")
