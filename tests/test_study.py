"""The searcher's Optuna study on disk, in a real (tiny) Tune search: a real local Ray, Optuna's
journal, ASHA, the live view's plain lines, results.collect, and a Tune restore.

The trainable trains nothing: it reports made-up learning curves with the metric keys of
search.run's trainable, so the search takes seconds. TPE is seeded and trials run one at a time,
so the same trials complete, are pruned and fail on every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle

import optuna
import pytest
from conftest import local_ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from model.config import Config
from results.collect import collect
from results.schema import EPOCHS, TRIALS, read_table
from search.progress import Progress
from search.strategy import study
from search.strategy.searcher import HonestOptunaSearch

MAX_EPOCHS = 4
TRIALS_RUN = 8
FAILS = (8, 16)  # a trial with one of these dense widths raises after its first epoch
STATES = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "error": TrialState.FAIL}
RUN = {
    "space": "test", "budget": "tiny", "trials": TRIALS_RUN, "max_epochs": MAX_EPOCHS, "grace": 1, "eta": 2,
    "concurrency": 1, "cpus_per_trial": 1.0, "gpus_per_trial": 0.0, "seed": 0, "subset": None, "val_size": 100,
}


def curve_trainable(config: dict) -> None:
    from ray import tune

    for epoch in range(1, config["epochs"] + 1):
        if config["dense"] in FAILS and epoch == 2:
            raise RuntimeError("a trial that fails")
        val_acc = 0.5 + config["dense"] / 1000 + 0.05 * config["lr"] * 100 - 0.2 / epoch
        tune.report({
            "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": val_acc, "val_loss": 1.0 / epoch,
            "val_acc": val_acc, "lr": config["lr"], "seconds": 1.0, "images_per_second": 100.0,
            "params": 1000, "node": "10.0.0.1",
        })


def _tuner_parts(storage: str):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    searcher = HonestOptunaSearch(max_epochs=MAX_EPOCHS, seed=0, journal=study.journal_path(f"{storage}/exp"))
    space = {
        **Config(filters=(8, 16), epochs=MAX_EPOCHS).to_flat(),
        "dense": tune.choice([8, 16, 32, 64, 128]),
        "lr": tune.loguniform(1e-4, 1e-2),
    }
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=MAX_EPOCHS, grace_period=1, reduction_factor=2)
    progress = Progress(TRIALS_RUN, MAX_EPOCHS, shown=["dense", "lr"], grace=1, eta=2)
    return searcher, space, scheduler, progress


@pytest.fixture(scope="module")
def ray_runtime():
    with local_ray(__name__):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        yield


@pytest.fixture(scope="module")
def searched(ray_runtime, tmp_path_factory):
    """(experiment folder, what the live view wrote) of a finished tiny search, collected."""
    from ray import tune

    storage = str(tmp_path_factory.mktemp("runs"))
    searcher, space, scheduler, progress = _tuner_parts(storage)
    tuner = tune.Tuner(
        curve_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", search_alg=searcher, scheduler=scheduler,
                                    num_samples=TRIALS_RUN, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name="exp", callbacks=[progress], verbose=0),
    )
    log = io.StringIO()  # not a terminal: the live view writes plain lines
    with contextlib.redirect_stderr(log):
        tuner.fit()
    experiment = os.path.join(storage, "exp")
    with open(os.path.join(experiment, "run.json"), "w") as f:
        json.dump(RUN, f)
    collect(experiment)
    return experiment, log.getvalue()


def _journal_trials(experiment: str) -> dict[str, optuna.trial.FrozenTrial]:
    """The study as a user opens it, by Tune trial id."""
    storage = JournalStorage(JournalFileBackend(os.path.join(experiment, study.JOURNAL_FILE)))
    loaded = optuna.load_study(study_name=study.STUDY_NAME, storage=storage)
    return {t.user_attrs[study.TRIAL_ID]: t for t in loaded.get_trials(deepcopy=False)}


@pytest.mark.slow
def test_the_journal_holds_the_trials_and_states_of_the_trials_table(searched):
    experiment, _ = searched
    trials = read_table(os.path.join(experiment, "report", "trials.parquet"), TRIALS).set_index("trial_id")
    epochs = read_table(os.path.join(experiment, "report", "epochs.parquet"), EPOCHS)
    journal = _journal_trials(experiment)
    assert set(journal) == set(trials.index)
    assert set(trials["status"]) == set(STATES), "the seeded search must complete, prune and fail trials"
    for trial_id, row in trials.iterrows():
        ot = journal[trial_id]
        assert ot.state == STATES[row["status"]], trial_id
        assert ot.params == {"dense": row["dense"], "lr": pytest.approx(row["lr"])}
        curve = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        assert list(ot.intermediate_values) == curve["epoch"].tolist()
        assert list(ot.intermediate_values.values()) == pytest.approx(curve["val_acc"].tolist())
        if ot.state == TrialState.COMPLETE:
            assert ot.value == pytest.approx(row["last_val_acc"])
    assert study.load(experiment).trials == list(journal.values())  # the project's own shortcut


@pytest.mark.slow
def test_the_live_view_writes_a_line_per_finished_trial_when_not_on_a_terminal(searched):
    experiment, log = searched
    lines = log.splitlines()
    trials = read_table(os.path.join(experiment, "report", "trials.parquet"), TRIALS)
    assert lines[0].startswith("[0:00:0") and f"starting {TRIALS_RUN} trials of up to {MAX_EPOCHS} epochs" in lines[0]
    for row in trials.itertuples():
        ended = [line for line in lines if f"trial {row.trial_id} {row.status} at epoch {row.epochs_run} of" in line]
        assert len(ended) == 1, (row.trial_id, log)
    counts = trials["status"].value_counts()
    assert lines[-1].startswith("[") and "finished; 0 running" in lines[-1]
    assert f"{counts['completed']} completed, {counts['pruned']} pruned, {counts['error']} error of {TRIALS_RUN}" in lines[-1]


@pytest.mark.slow
def test_a_tune_restore_takes_the_journal_back_to_the_searchers_snapshot(searched, tmp_path):
    """What the journal says after Tune's last snapshot (here: a trial added behind Tune's back, as a
    trial asked after a snapshot and before a SIGKILL would be) is gone after a restore."""
    from ray import tune

    experiment, _ = searched
    before = _journal_trials(experiment)
    storage = JournalStorage(JournalFileBackend(os.path.join(experiment, study.JOURNAL_FILE)))
    optuna.load_study(study_name=study.STUDY_NAME, storage=storage).ask()
    assert len(_journal_trials_by_number(experiment)) == len(before) + 1
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        tune.Tuner.restore(experiment, curve_trainable, resume_unfinished=True).fit()
    after = _journal_trials(experiment)
    assert len(_journal_trials_by_number(experiment)) == len(before)
    assert {k: (t.state, t.intermediate_values) for k, t in after.items()} == {
        k: (t.state, t.intermediate_values) for k, t in before.items()
    }
    # The restored live view counts the restored trials as finished, not as interrupted.
    assert "finished; 0 running" in log.getvalue().splitlines()[-1]


def _journal_trials_by_number(experiment: str) -> list:
    return study.load(experiment).get_trials(deepcopy=False)


def _searcher(journal) -> HonestOptunaSearch:
    from ray import tune

    searcher = HonestOptunaSearch(max_epochs=3, seed=0, journal=journal)
    searcher.set_search_properties("val_acc", "max", {"lr": tune.loguniform(1e-4, 1e-2)})
    return searcher


def test_restore_rolls_the_journal_back_and_the_search_goes_on(tmp_path):
    journal = tmp_path / "exp" / study.JOURNAL_FILE
    searcher = _searcher(journal)
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("a", {"training_iteration": 1, "val_acc": 0.5})
    searcher.save(str(tmp_path / "snapshot.pkl"))
    # After the snapshot: a finishes, c is asked; then the driver dies.
    searcher.on_trial_result("a", {"training_iteration": 2, "val_acc": 0.6})
    searcher.on_trial_complete("a", {"training_iteration": 3, "val_acc": 0.7})
    searcher.suggest("c")
    assert [t.state for t in study.load(tmp_path / "exp").trials] == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.RUNNING]

    # Without the rollback, Tune's restored (still running) trial a could not be told again.
    stale = _searcher(journal)
    with open(tmp_path / "snapshot.pkl", "rb") as f:
        stale.__dict__.update({k: v for k, v in pickle.load(f).items() if k != "journal_bytes"})
    with pytest.raises(RuntimeError, match="finished"):
        stale.on_trial_complete("a", {"training_iteration": 3, "val_acc": 0.7})

    restored = _searcher(journal)
    restored.restore(str(tmp_path / "snapshot.pkl"))
    trials = study.load(tmp_path / "exp").trials
    assert [(t.user_attrs["trial_id"], t.state, t.intermediate_values) for t in trials] == [
        ("a", TrialState.RUNNING, {1: 0.5}), ("b", TrialState.RUNNING, {}),
    ]
    # a runs again from its epoch-1 checkpoint, and ASHA stops it at epoch 2 this time
    restored.on_trial_complete("a", {"training_iteration": 2, "val_acc": 0.62})
    restored.on_trial_complete("b", None, error=True)
    restored.suggest("d")
    trials = study.load(tmp_path / "exp").trials
    assert [(t.user_attrs["trial_id"], t.state) for t in trials] == [
        ("a", TrialState.PRUNED), ("b", TrialState.FAIL), ("d", TrialState.RUNNING),
    ]
    assert trials[0].intermediate_values == {1: 0.5, 2: 0.62} and trials[0].value == pytest.approx(0.62)
    assert [t.state for t in restored.study.trials] == [t.state for t in trials]  # the searcher's view agrees


def test_without_a_journal_the_study_stays_in_memory(tmp_path):
    searcher = _searcher(None)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "snapshot.pkl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.pkl"]
    with pytest.raises(ValueError, match="has no optuna-journal.log"):
        study.load(tmp_path)


def test_a_search_stored_at_a_uri_has_no_journal_path():
    assert study.journal_path("s3://bucket/runs/x") is None
    assert study.journal_path("runs/x") == os.path.join("runs/x", study.JOURNAL_FILE)


def test_a_restore_after_the_folder_moved_keeps_the_journal_in_the_new_folder(tmp_path):
    old, new = tmp_path / "old" / study.JOURNAL_FILE, tmp_path / "new" / study.JOURNAL_FILE
    searcher = _searcher(old)
    searcher.suggest("a")
    searcher.on_trial_result("a", {"training_iteration": 1, "val_acc": 0.5})
    searcher.save(str(tmp_path / "snapshot.pkl"))
    moved = _searcher(new)  # this session's searcher, pointed at where the experiment is now
    moved.restore(str(tmp_path / "snapshot.pkl"))
    old.unlink()  # the old folder is gone: nothing may read or write there any more
    moved.on_trial_complete("a", {"training_iteration": 2, "val_acc": 0.6})
    (trial,) = study.load(tmp_path / "new").trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.5, 2: 0.6}
    assert moved.journal == str(new) and not old.exists()


def test_the_study_names_its_objective_for_optuna_dashboard(tmp_path):
    journal = tmp_path / "exp" / study.JOURNAL_FILE
    _searcher(journal).suggest("a")
    assert study.load(tmp_path / "exp").metric_names == ["val_acc"]  # as optuna-dashboard reads the journal
