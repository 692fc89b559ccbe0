"""Warm starts (search.strategy.warm): which earlier trials TPE is handed, and how they are told."""

from __future__ import annotations

import os

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from ray import tune

from results.schema import EPOCHS, TRIALS, write_json, write_table
from search.settings import RUN_FILE
from search.strategy import warm
from search.strategy.searcher import HonestOptunaSearch

SPACE = {"lr": tune.loguniform(1e-4, 1e-2), "batch_size": tune.choice([64, 128]), "dense": 256, "epochs": 3}


def _tables(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A source's trials and epochs tables from (config, status, val_acc per epoch) rows."""
    trials = pd.DataFrame([{"trial_id": r["id"], "status": r["status"], "epochs_run": len(r["curve"]),
                            "dense": r.get("dense", 256), "epochs": r.get("epochs", 3), "lr": r["lr"],
                            "batch_size": r["batch_size"]} for r in rows])
    epochs = pd.DataFrame([{"trial_id": r["id"], "epoch": e + 1, "val_acc": v} for r in rows
                           for e, v in enumerate(r["curve"])])
    return trials, epochs


ROWS = [
    {"id": "a", "status": "completed", "lr": 1e-3, "batch_size": 64, "curve": [0.5, 0.6, 0.7]},
    {"id": "b", "status": "pruned", "lr": 3e-3, "batch_size": 128, "curve": [0.4]},
    {"id": "c", "status": "error", "lr": 1e-3, "batch_size": 64, "curve": [0.3]},
    {"id": "d", "status": "completed", "lr": 5e-2, "batch_size": 64, "curve": [0.5, 0.6, 0.8]},  # lr above the range
    {"id": "e", "status": "completed", "lr": 1e-3, "batch_size": 256, "curve": [0.5, 0.6, 0.8]},  # no such batch size
    {"id": "f", "status": "completed", "lr": 1e-3, "batch_size": 64, "dense": 128, "curve": [0.5, 0.6, 0.9]},  # fixed value differs
    {"id": "g", "status": "completed", "lr": 2e-3, "batch_size": 64, "epochs": 2, "curve": [0.5, 0.75]},  # a shorter schedule
    {"id": "h", "status": "unfinished", "lr": 2e-3, "batch_size": 64, "curve": [0.5]},
]


def test_finished_trials_are_told_as_the_search_tells_its_own_and_the_rest_left_out_with_a_note():
    taken, note = warm.from_tables(*_tables(ROWS), SPACE, max_epochs=3, source="runs/old")
    by_id = {t.user_attrs[warm.TRIAL_ATTR]: t for t in taken}
    assert sorted(by_id) == ["a", "b", "g"]  # c errored, h never ended; d, e, f fall outside the space
    a, b, g = by_id["a"], by_id["b"], by_id["g"]
    assert (a.state, a.value, a.intermediate_values) == (TrialState.COMPLETE, 0.7, {1: 0.5, 2: 0.6, 3: 0.7})
    assert (b.state, b.value, b.intermediate_values) == (TrialState.PRUNED, 0.4, {1: 0.4})
    # Completed on a 2-epoch schedule: not a completed trial of this 3-epoch search.
    assert (g.state, g.value, g.intermediate_values) == (TrialState.PRUNED, 0.75, {1: 0.5, 2: 0.75})
    assert a.params == {"lr": 1e-3, "batch_size": 64} and a.user_attrs[warm.SOURCE_ATTR] == "runs/old"
    assert "\n" not in note and note.startswith("warm start from runs/old: 3 finished trials (1 completed, 2 pruned")
    assert "3 left out, outside this space (first: d: lr=0.05)" in note


def test_sources_are_named_once_each_and_never_empty():
    assert warm.sources("runs/a, runs/b") == ["runs/a", "runs/b"]
    for bad, said in [("", "give experiment folders"), ("runs/a,", "give experiment folders"),
                      ("runs/a,runs/a", "runs/a named twice"), ("runs/a,./runs/a/", "./runs/a/, runs/a named twice"),
                      (f"runs/a,{os.path.abspath('runs/a')}", "named twice")]:
        with pytest.raises(ValueError, match=said):
            warm.sources(bad)


def _experiment(folder, space: str, rows: list[dict], width: float | None = None):
    """A collected search of `space` (at `width`; None: a run.json from before width= existed)."""
    trials, epochs = _tables(rows)
    full = pd.DataFrame({name: trials[name] if name in trials else None for name in TRIALS.names})
    write_table(full, folder / "report" / "trials.parquet", TRIALS)
    write_table(pd.DataFrame({name: epochs[name] if name in epochs else None for name in EPOCHS.names}),
                folder / "report" / "epochs.parquet", EPOCHS)
    write_json({"space": space} | ({} if width is None else {"width": width}), folder / RUN_FILE)
    write_json(None, folder / "report" / "best.json")  # results.collect writes it last
    return folder


def test_a_source_must_be_a_search_of_the_same_space_with_a_finished_trial(tmp_path):
    same = _experiment(tmp_path / "same", "augmentation", ROWS[:2])
    warm.check(str(same), "augmentation")
    other = _experiment(tmp_path / "other", "full", ROWS[:2])
    with pytest.raises(ValueError, match=r"a search of space=full, not space=augmentation"):
        warm.check(f"{same},{other}", "augmentation")
    narrow = _experiment(tmp_path / "narrow", "augmentation", ROWS[:2], width=0.25)
    warm.check(str(narrow), "augmentation", width=0.25)
    with pytest.raises(ValueError, match=r"narrow: a search at width=0.25, not width=1; a warm start takes"):
        warm.check(f"{same},{narrow}", "augmentation")
    with pytest.raises(ValueError, match=r"same: a search at width=1, not width=0.5"):
        warm.check(str(same), "augmentation", width=0.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no run.json there"):
        warm.check(str(tmp_path / "empty"), "augmentation")
    with pytest.raises(ValueError, match="nothing does not exist; give experiment folders"):  # was "no run.json there"
        warm.check(str(tmp_path / "nothing"), "augmentation")
    with pytest.raises(ValueError, match="run.json is a file; give experiment folders"):
        warm.check(str(same / RUN_FILE), "augmentation")
    errored = _experiment(tmp_path / "errored", "augmentation", [ROWS[2]])
    with pytest.raises(ValueError, match="no finished trial to start from"):
        warm.check(str(errored), "augmentation")


def test_a_replay_warm_starts_only_replays_and_a_search_in_use_is_no_source(tmp_path, lock_holder):
    # Both were accepted: a real search's TPE took a replay's predicted accuracies for measured ones,
    # and a running search's advice was to collect it, which wrote a partial report into it.
    replayed = _experiment(tmp_path / "replayed", "augmentation", ROWS[:2])
    write_json({"space": "augmentation", "replay": "/records/r"}, replayed / RUN_FILE)
    with pytest.raises(ValueError, match=r"replayed: a replay of recorded curves \(replay=/records/r\), whose accuracies"):
        warm.check(str(replayed), "augmentation")
    warm.check(str(replayed), "augmentation", replay=True)
    running = _experiment(tmp_path / "running", "augmentation", ROWS[:2])
    lock_holder(running)
    with pytest.raises(ValueError, match=r"^warm_start=.*running is in use by a test \(pid \d+"):
        warm.check(str(running), "augmentation")


def test_tpe_models_from_its_first_suggestion_when_warm_started():
    """Forty warm trials (more than TPE's ten random start-up trials; its good set, the best 5%, is
    two of them), all good at small lr and bad at large: the warm searcher's first suggestions sit
    at small lr; a cold one's are random."""
    space = {"lr": tune.loguniform(1e-4, 1e-1)}
    lrs = [10 ** (-4 + 3 * i / 39) for i in range(40)]
    rows = [{"id": f"w{i}", "status": "completed", "lr": lr, "batch_size": 64, "curve": [1.0 - (lr > 3e-3)] * 3}
            for i, lr in enumerate(lrs)]
    taken, _ = warm.from_tables(*_tables(rows), space, max_epochs=3, source="runs/old")

    def first_lrs(warm_trials) -> list[float]:
        searcher = HonestOptunaSearch(max_epochs=3, seed=0, metric="val_acc", mode="max", warm=warm_trials)
        assert searcher.set_search_properties(None, None, space)
        return [searcher.suggest(f"t{i}")["lr"] for i in range(8)]

    warm_lrs, cold_lrs = first_lrs(tuple(taken)), first_lrs(())
    assert all(lr < 3e-3 for lr in warm_lrs), warm_lrs
    assert any(lr > 3e-3 for lr in cold_lrs), cold_lrs  # the cold start draws from the whole range
    searcher = HonestOptunaSearch(max_epochs=3, seed=0, metric="val_acc", mode="max", warm=tuple(taken))
    searcher.set_search_properties(None, None, space)
    assert len(searcher.study.trials) == 40 and searcher.warm == ()  # in the study once; not kept twice
    assert {t.user_attrs[warm.SOURCE_ATTR] for t in searcher.study.trials} == {"runs/old"}
    assert isinstance(searcher.study.trials[0], optuna.trial.FrozenTrial)
