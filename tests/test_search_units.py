"""ASHA and the Optuna searcher fed made-up learning curves: no training, no Ray cluster.
The live view has its own tests (test_progress.py), the searcher's journal too (test_study.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import TrialScheduler

from search.strategy.asha import RungKeeper, make_scheduler, rungs
from search.strategy.searcher import HonestOptunaSearch

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE

# Eight made-up curves over 4 epochs: accuracy rises by 0.02 an epoch from each trial's level.
LEVELS = [0.80, 0.60, 0.85, 0.55, 0.70, 0.90, 0.50, 0.65]
CURVES = {f"t{i}": [level + 0.02 * e for e in range(4)] for i, level in enumerate(LEVELS)}


def _scheduler():
    scheduler = make_scheduler(max_epochs=4, grace=1, eta=2)
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def _feed(scheduler, events):
    """events: (trial_id, epoch) in arrival order; returns {(trial_id, epoch): decision}.

    A stopped trial reports no further epochs, as in Tune."""
    decisions, stopped = {}, set()
    for trial_id, epoch in events:
        if trial_id in stopped:
            continue
        trial = SimpleNamespace(trial_id=trial_id, config={})  # one lr schedule: plain ASHA
        if epoch == 1:
            scheduler.on_trial_add(None, trial)
        result = {"training_iteration": epoch, "val_acc": CURVES[trial_id][epoch - 1]}
        decision = scheduler.on_trial_result(None, trial, result)
        decisions[(trial_id, epoch)] = decision
        if decision == STOP:
            stopped.add(trial_id)
    return decisions


def _events():
    """Trials arrive two at a time, each running its 4 epochs: as with concurrency=2."""
    ids = list(CURVES)
    return [(t, e) for pair in zip(ids[::2], ids[1::2]) for e in range(1, 5) for t in pair]


def test_asha_stops_trials_below_the_rung_cutoff():
    scheduler = _scheduler()
    decisions = _feed(scheduler, _events())
    milestones = [r["milestone"] for r in rungs(scheduler)]
    assert milestones == [1, 2, 4]
    # t0 comes first: nothing recorded yet, so it continues; a later, weaker trial is stopped at epoch 1.
    assert decisions[("t0", 1)] == CONTINUE
    stopped_at_1 = [t for (t, e), d in decisions.items() if e == 1 and d == STOP]
    assert stopped_at_1, "some weak trial must be stopped at the first rung"
    assert "t1" in stopped_at_1  # 0.60 against t0's 0.80
    for t in stopped_at_1:
        assert (t, 2) not in decisions  # a stopped trial reports no more
    # Every epoch-4 result ends the trial (max_t).
    assert all(d == STOP for (t, e), d in decisions.items() if e == 4)


def test_rungs_survive_an_interruption_with_the_same_decisions():
    events = _events()
    uninterrupted = _feed(_scheduler(), events)

    first = _scheduler()
    half = len(events) // 2
    before = _feed(first, events[:half])
    state = RungKeeper(first, "unused").get_state()

    resumed = _scheduler()  # what Tuner.restore brings back: an empty scheduler...
    RungKeeper(resumed, "unused").set_state(state)  # ...given the saved rungs by Tune
    started = {t for t, _ in before}
    for trial_id in started:  # Tune re-adds the restored trials to the scheduler
        resumed.on_trial_add(None, SimpleNamespace(trial_id=trial_id, config={}))
    stopped_before = {t for (t, e), d in before.items() if d == STOP}
    after = _feed(resumed, [(t, e) for t, e in events[half:] if t not in stopped_before])
    assert {**before, **after} == uninterrupted

    # Without the saved rungs (Ray's own restore) the decisions differ: the test can fail.
    forgetful = _scheduler()
    for trial_id in started:
        forgetful.on_trial_add(None, SimpleNamespace(trial_id=trial_id, config={}))
    lost = _feed(forgetful, [(t, e) for t, e in events[half:] if t not in stopped_before])
    assert {**before, **lost} != uninterrupted


def _searcher(max_epochs=4):
    searcher = HonestOptunaSearch(max_epochs=max_epochs, seed=0)
    searcher.set_search_properties("val_acc", "max", {"lr": tune.loguniform(1e-4, 1e-2)})
    return searcher


def test_searcher_tells_optuna_early_stopped_trials_are_pruned_with_every_epoch():
    searcher = _searcher()
    for trial_id in ("full", "stopped", "broken"):
        assert "lr" in searcher.suggest(trial_id)
    for epoch, acc in enumerate([0.6, 0.7, 0.75, 0.8], start=1):
        result = {"training_iteration": epoch, "val_acc": acc}
        if epoch < 4:
            searcher.on_trial_result("full", result)
    searcher.on_trial_complete("full", {"training_iteration": 4, "val_acc": 0.8})
    searcher.on_trial_result("stopped", {"training_iteration": 1, "val_acc": 0.5})
    # ASHA stops it on its epoch-2 result: Tune passes that result to on_trial_complete only.
    searcher.on_trial_complete("stopped", {"training_iteration": 2, "val_acc": 0.55})
    searcher.on_trial_complete("broken", None, error=True)

    full, stopped, broken = searcher.study.get_trials(deepcopy=False)
    assert full.state == TrialState.COMPLETE and math.isclose(full.value, 0.8)
    assert full.intermediate_values == {1: 0.6, 2: 0.7, 3: 0.75, 4: 0.8}
    assert stopped.state == TrialState.PRUNED  # Optuna keeps the last intermediate value as its value
    assert stopped.intermediate_values == {1: 0.5, 2: 0.55}
    assert broken.state == TrialState.FAIL


def test_searcher_ignores_epochs_repeated_after_a_resume():
    searcher = _searcher()
    searcher.suggest("a")
    for epoch in (1, 2, 2, 3):  # a resumed trial repeats the epoch after its checkpoint
        searcher.on_trial_result("a", {"training_iteration": epoch, "val_acc": 0.5 + epoch / 10})
    (trial,) = searcher.study.get_trials(deepcopy=False)
    assert sorted(trial.intermediate_values) == [1, 2, 3]


def test_grace_beyond_max_epochs_is_refused():
    with pytest.raises(ValueError, match="grace=5 exceeds max_epochs=3"):
        make_scheduler(max_epochs=3, grace=5, eta=2)


def test_describe_reads_each_domain_as_the_searcher_samples_it():
    from search.describe import describe

    assert describe(tune.randint(1, 4)) == "integer [1, 3]"  # Tune's upper bound is exclusive, Optuna's is not
    assert describe(tune.loguniform(1e-4, 3e-3)) == "log-uniform [0.0001, 0.003]"
    assert describe(tune.quniform(0, 1, 0.25)) == "uniform [0, 1] in steps of 0.25"
    assert describe(tune.choice(["32,64", "64,128"])) == "one of 32,64 | 64,128"
    assert describe("same") == "fixed 'same'"
