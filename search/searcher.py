"""Optuna TPE that is told the truth about early-stopped trials, with its study on disk.

Ray's stock OptunaSearch tells Optuna that a trial ASHA stopped at epoch 2 is COMPLETE with its
epoch-2 accuracy, so TPE ranks 2-epoch and 30-epoch accuracies as if they were alike. Here every
epoch's value reaches Optuna as an intermediate value (the one that triggered the stop included),
and a trial that ended before `max_epochs` without error is told as PRUNED (results.status decides,
as for the result tables). Optuna's TPE then ranks pruned trials below complete ones, by how far
they got and their last value.

With `journal` (a local file, search.study.journal_path(experiment)), the study lives in Optuna's
journal storage: optuna-dashboard and optuna.load_study read it while the search runs and after.
Tune snapshots the searcher (save) with the rest of the experiment and restores it after Ctrl-C, a
crash or SIGKILL (restore). By then the journal may hold more than the snapshot: trials asked,
epochs reported and trials told after it, which the restored Tune does not know and runs again. So
the snapshot carries the journal as it was, and a restore puts it back: study and Tune agree.
"""

from __future__ import annotations

import os
import pickle
import uuid

import optuna
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from results.status import ran_to_the_end
from search import internals, study


class HonestOptunaSearch(OptunaSearch):
    journal: str | None = None  # the study's journal file; None: in memory, inside Tune's snapshots only

    def __init__(
        self, *, max_epochs: int, seed: int, metric: str | None = None, mode: str | None = None,
        journal: str | os.PathLike | None = None,
    ) -> None:
        """metric and mode: give them here or in TuneConfig, not both (Tune refuses two sources)."""
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        super().__init__(metric=metric, mode=mode, sampler=sampler, study_name=study.STUDY_NAME)
        self.max_epochs = max_epochs
        self.journal = os.path.abspath(journal) if journal is not None else None
        self._last_step: dict[str, int] = {}  # trial id -> last epoch told to Optuna (resumes repeat epochs)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        # Here, not in __init__: the searcher is built before Tune creates the experiment folder.
        if self.journal is not None:
            os.makedirs(os.path.dirname(self.journal), exist_ok=True)
            internals.use_storage(self, study.storage(self.journal))
        return super().set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        internals.optuna_trial(self, trial_id).set_user_attr(study.TRIAL_ID, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in internals.told(self):
            return
        if result and not error:
            self._report(trial_id, result)  # Tune skips the searcher for the result that stopped the trial
        epochs = (result or {}).get(TRAINING_ITERATION, 0)
        trial = internals.optuna_trial(self, trial_id)
        if error:
            internals.optuna_study(self).tell(trial, state=TrialState.FAIL)
        elif result and ran_to_the_end(epochs, self.max_epochs):
            internals.optuna_study(self).tell(trial, result[self.metric])
        else:  # Optuna keeps the last intermediate value as a pruned trial's value
            internals.optuna_study(self).tell(trial, state=TrialState.PRUNED)
        internals.told(self).add(trial_id)

    def _report(self, trial_id: str, result: dict) -> None:
        if trial_id in internals.told(self) or self.metric not in result:
            return
        step = result[TRAINING_ITERATION]
        if step > self._last_step.get(trial_id, 0):
            internals.optuna_trial(self, trial_id).report(result[self.metric], step)
            self._last_step[trial_id] = step

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
            internals.point_journal(internals.optuna_study(self), journal)

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
