"""Optuna TPE that is told the truth about early-stopped trials.

Ray's stock OptunaSearch tells Optuna that a trial ASHA stopped at epoch 2 is COMPLETE with its
epoch-2 accuracy, so TPE ranks 2-epoch and 30-epoch accuracies as if they were alike. Here every
epoch's value reaches Optuna as an intermediate value (the one that triggered the stop included),
and a trial that ended before `max_epochs` without error is told as PRUNED. Optuna's TPE then ranks
pruned trials below complete ones, by how far they got and their last value.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch


class HonestOptunaSearch(OptunaSearch):
    def __init__(self, *, max_epochs: int, seed: int, metric: str | None = None, mode: str | None = None) -> None:
        """metric and mode: give them here or in TuneConfig, not both (Tune refuses two sources)."""
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        super().__init__(metric=metric, mode=mode, sampler=sampler)
        self.max_epochs = max_epochs
        self._last_step: dict[str, int] = {}  # trial id -> last epoch told to Optuna (resumes repeat epochs)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error:
            self._report(trial_id, result)  # Tune skips the searcher for the result that stopped the trial
        epochs = (result or {}).get(TRAINING_ITERATION, 0)
        if error or not result or epochs >= self.max_epochs or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def _report(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or self.metric not in result:
            return
        step = result[TRAINING_ITERATION]
        if step > self._last_step.get(trial_id, 0):
            self._ot_trials[trial_id].report(result[self.metric], step)
            self._last_step[trial_id] = step

    @property
    def study(self) -> optuna.Study:
        return self._ot_study
