"""Every private attribute of Ray and Optuna the project uses (internals/), on real objects.

When a Ray or Optuna upgrade moves one, this file fails and names it; nothing else in the project
touches them. No running Ray: these are plain objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pyarrow.fs as pafs
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

import internals

ROOT = Path(__file__).resolve().parents[1]


def _searcher() -> OptunaSearch:
    searcher = OptunaSearch(metric="val_acc", mode="max", sampler=optuna.samplers.TPESampler(seed=0))
    searcher.set_search_properties(None, None, {"lr": tune.loguniform(1e-4, 1e-2)})
    return searcher


def test_optuna_search_keeps_its_study_trials_and_told_set_where_internals_looks():
    searcher = _searcher()
    study = internals.optuna_study(searcher)
    assert isinstance(study, optuna.Study)
    searcher.suggest("t1")
    trial = internals.optuna_trial(searcher, "t1")
    assert isinstance(trial, optuna.Trial) and trial.number == 0
    assert internals.told(searcher) == set()
    searcher.on_trial_complete("t1", {"val_acc": 0.5, "training_iteration": 1})
    assert internals.told(searcher) == {"t1"}  # Ray's own bookkeeping, the set internals hands out
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_storage_given_before_set_search_properties_holds_the_study(tmp_path):
    searcher = OptunaSearch(metric="val_acc", mode="max", study_name="s")
    storage = optuna.storages.InMemoryStorage()
    internals.use_storage(searcher, storage)
    searcher.set_search_properties(None, None, {"lr": tune.loguniform(1e-4, 1e-2)})
    searcher.suggest("t1")
    assert [t.number for t in optuna.load_study(study_name="s", storage=storage).trials] == [0]


def test_asha_rungs_are_live():
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2)
    scheduler.set_search_properties("val_acc", "max")
    rungs = internals.asha_rungs(scheduler)
    assert [int(milestone) for milestone, _ in rungs] == [4, 2, 1]  # highest first (max_t too), as Ray keeps them
    scheduler.on_trial_add(None, type("T", (), {"trial_id": "t1"})())
    result = {"training_iteration": 1, "val_acc": 0.7}
    scheduler.on_trial_result(None, type("T", (), {"trial_id": "t1"})(), result)
    assert dict(internals.asha_rungs(scheduler))[1] == {"t1": 0.7}  # what the scheduler recorded


def test_a_trials_folder_comes_from_its_storage_context(tmp_path):
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="trial_x")
    trial = Trial("fn", config={}, storage=storage, stub=True)
    fs, folder = internals.trial_folder(trial)
    assert isinstance(fs, pafs.FileSystem) and folder.endswith("exp/trial_x")


def test_the_experiment_analysis_logger_is_the_one_ray_logs_through():
    from ray.tune.analysis import experiment_analysis

    assert experiment_analysis.logger.name == internals.EXPERIMENT_ANALYSIS_LOGGER


def test_cluster_validation_and_the_fake_provider_are_where_internals_looks(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    before = json.dumps(config, sort_keys=True)
    prepared = internals.validate_cluster_config(config)
    assert prepared["provider"]["type"] == "aws" and json.dumps(config, sort_keys=True) == before
    module, name = internals.FAKE_MULTINODE_PROVIDER.rsplit(".", 1)
    assert hasattr(__import__(module, fromlist=[name]), name)


def test_a_journal_storage_can_be_pointed_at_another_file(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "a.log"))))
    study.ask()
    (tmp_path / "b.log").write_bytes((tmp_path / "a.log").read_bytes())
    internals.point_journal(study, JournalFileBackend(str(tmp_path / "b.log")))
    study.ask()
    count = [optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / n)))).trials
             for n in ("a.log", "b.log")]
    assert [len(trials) for trials in count] == [1, 2]  # the second trial went to the new file only


def test_a_tuners_searcher_and_callbacks_are_where_internals_looks(tmp_path):
    from ray.tune import Callback, Tuner

    searcher, callback = _searcher(), Callback()
    tuner = Tuner(lambda config: None, tune_config=tune.TuneConfig(search_alg=searcher),
                  run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", callbacks=[callback]))
    assert internals.tuner_searcher(tuner) is searcher
    assert internals.tuner_callbacks(tuner) == [callback]


def test_tpe_reads_trials_through_the_view_as_it_relabels_them(monkeypatch):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    module, name = internals.TPE_SPLIT.rsplit(".", 1)
    split, splits = getattr(__import__(module, fromlist=[name]), name), []

    def watched(study, trials, n_below):
        good, bad = split(study, trials, n_below)
        splits.append(([t.number for t in good], {t.number: t.state for t in trials}))
        return good, bad

    def seen(trial):
        if trial.user_attrs.get("hidden"):
            return TrialState.RUNNING, None
        if trial.state == TrialState.PRUNED:
            return TrialState.COMPLETE, [trial.intermediate_values[max(trial.intermediate_values)]]
        return None

    monkeypatch.setattr(internals.TPE_SPLIT, watched)
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2, constant_liar=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    x = FloatDistribution(0, 1)
    hidden = study.ask({"x": x})
    hidden.set_user_attr("hidden", True)
    study.tell(hidden, state=TrialState.PRUNED)
    study.tell(study.ask({"x": x}), 0.5)
    view = internals.study_seen_as(study, seen)
    assert [t.number for t in view._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))] == [1]
    assert [(t.number, t.state) for t in view._get_trials(states=(TrialState.RUNNING,))] == [(0, TrialState.RUNNING)]
    assert study.trials[0].state == TrialState.PRUNED and view.direction == study.direction  # the study itself is untouched

    asking = study.ask()
    sampler.sample_independent(view, study.trials[-1], "x", x)
    assert splits == []  # one trial finished, as the view shows it: TPE's random start-up
    sampler.sample_independent(study, study.trials[-1], "x", x)
    assert len(splits) == 1  # two finished, as the study shows it: TPE models them
    study.tell(asking, 0.7)
    stopped = study.ask({"x": x})  # pruned at its second step with 0.9: the best value so far
    stopped.report(0.2, 1)
    stopped.report(0.9, 2)
    study.tell(stopped, state=TrialState.PRUNED)
    assert [(t.state, t.value) for t in view._get_trials(states=(TrialState.COMPLETE,))][-1] == (TrialState.COMPLETE, 0.9)
    assert study.trials[stopped.number].state == TrialState.PRUNED
    study.ask()
    sampler.sample_independent(view, study.trials[-1], "x", x)
    good, states = splits[-1]
    assert states[0] == TrialState.RUNNING and 0 not in good  # the hidden trial: bad, never good
    assert good == [stopped.number]  # ranked by its value at the stop, above the complete trials


def test_ray_init_takes_the_session_folder_keyword_internals_passes():
    """ray.init pops its private keywords from **kwargs by name; an unknown one it refuses. (The
    folder in use: tests/test_retrain.py's ray_session test finds the session's sockets there.)"""
    import inspect

    import ray

    (keyword,) = internals.ray_temp_dir("/tmp/ray-x")
    assert f'kwargs.pop("{keyword}"' in inspect.getsource(ray.init)


def test_tunes_json_logger_restores_a_trials_file_through_the_method_result_log_overrides():
    """ResultLog keeps a restarted trial's result.json by overriding the one method Tune's JSON
    logger calls for it when a trial starts (tests/test_result_log.py: what the override is for)."""
    import inspect

    from ray.tune.logger import JsonLoggerCallback

    assert issubclass(internals.ResultLog, JsonLoggerCallback)
    assert "self._restore_from_remote(EXPR_RESULT_FILE, trial)" in inspect.getsource(JsonLoggerCallback.log_trial_start)
    names = [list(inspect.signature(c._restore_from_remote).parameters) for c in (JsonLoggerCallback, internals.ResultLog)]
    assert names[0] == names[1] == ["self", "file_name", "trial"]
