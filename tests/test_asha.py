"""Fair rungs: ASHA compares a trial only with trials of its own learning-rate schedule.

Made-up learning curves, no training: one-cycle trials start low (their learning rate is still
warming up at the first rung) and end high; constant-rate trials start high and plateau lower."""

from __future__ import annotations

import json
from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from search.strategy.asha import RungKeeper, make_scheduler, rungs
from search.strategy.searcher import probes

STOP = TrialScheduler.STOP
EPOCHS = 9
# Accuracy per epoch: one-cycle rises late to 0.93-0.94; constant is at 0.88-0.90 from epoch 1 on.
# Within a schedule the trials arrive in mixed order of quality (offsets 2, 0, 3, 1).
ONECYCLE = {f"o{i}": [0.70 + 0.026 * e + 0.005 * k for e in range(EPOCHS)] for i, k in enumerate((2, 0, 3, 1))}
CONSTANT = {f"c{i}": [0.86 + 0.005 * e + 0.004 * k for e in range(EPOCHS)] for i, k in enumerate((2, 0, 3, 1))}
SCHEDULE = {**{t: "onecycle" for t in ONECYCLE}, **{t: "constant" for t in CONSTANT}}
CURVES = {**ONECYCLE, **CONSTANT}


def _run(scheduler, order: list[str], schedule: dict[str, str] = SCHEDULE) -> dict[str, int]:
    """Each trial in turn runs until stopped; returns the epochs each one trained."""
    scheduler.set_search_properties("val_acc", "max")
    trained = {}
    for trial_id in order:
        trial = SimpleNamespace(trial_id=trial_id, config={"schedule": schedule[trial_id], "lr": 1e-3})
        scheduler.on_trial_add(None, trial)
        for epoch in range(1, EPOCHS + 1):
            result = {"training_iteration": epoch, "val_acc": CURVES[trial_id][epoch - 1]}
            if scheduler.on_trial_result(None, trial, result) == STOP:
                break
        scheduler.on_trial_complete(None, trial, result)
        trained[trial_id] = epoch
    return trained


# The constant-rate trials come first, as they would when TPE's start-up draws them first.
ORDER = [*CONSTANT, *ONECYCLE]


def test_plain_asha_stops_the_schedule_that_ends_best():
    plain = ASHAScheduler(time_attr="training_iteration", max_t=EPOCHS, grace_period=1, reduction_factor=3)
    trained = _run(plain, ORDER)
    assert all(trained[t] == 1 for t in ONECYCLE)  # all judged while still warming up
    best_finisher = max((t for t in trained if trained[t] == EPOCHS), key=lambda t: CURVES[t][-1])
    assert best_finisher in CONSTANT


def test_fair_asha_lets_the_best_of_each_schedule_run_to_the_end():
    trained = _run(make_scheduler(max_epochs=EPOCHS, grace=1, eta=3), ORDER)
    finished = [t for t in trained if trained[t] == EPOCHS]
    assert any(t in ONECYCLE for t in finished) and any(t in CONSTANT for t in finished)
    assert max(finished, key=lambda t: CURVES[t][-1]) in ONECYCLE  # the best final model is found
    assert any(trained[t] < EPOCHS for t in ONECYCLE)  # and weak one-cycle trials are still stopped


def test_one_schedule_is_plain_asha():
    same = dict.fromkeys(CURVES, "constant")
    fair, plain = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3), ASHAScheduler(
        time_attr="training_iteration", max_t=EPOCHS, grace_period=1, reduction_factor=3
    )
    assert _run(fair, ORDER, same) == _run(plain, ORDER, same)


def test_rungs_of_every_group_survive_a_restore():
    first = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3)
    _run(first, ORDER[:5])
    state = RungKeeper(first, "unused").get_state()
    assert {r["group"] for r in state["rungs"]} == {"constant", "onecycle"}
    restored = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3)
    RungKeeper(restored, "unused").set_state(state)  # before Tune sets metric and mode, as on restore
    assert rungs(restored) == rungs(first)
    assert _run(restored, ORDER[5:]) == _run(first, ORDER[5:])


def test_probes_stop_at_the_second_rung_however_well_they_do():
    without, with_probes = (_run(make_scheduler(max_epochs=EPOCHS, grace=1, eta=3, probes=n), ORDER) for n in (0, 2))
    assert without["c0"] == EPOCHS  # the first trial at every rung goes on unopposed
    assert with_probes["c0"] == 3 and with_probes["c1"] <= 3  # grace * eta, or the first rung's cut
    assert with_probes["o2"] == EPOCHS  # later trials as before: the best one-cycle trial ends


def test_which_trials_are_probes_survives_a_restore():
    first = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3, probes=5)
    _run(first, ORDER[:3])
    state = RungKeeper(first, "unused").get_state()
    restored = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3, probes=5)
    RungKeeper(restored, "unused").set_state(state)
    resumed = _run(restored, ORDER[3:])
    assert resumed == _run(first, ORDER[3:])  # c3 and o0 are the last probes; o2, the sixth trial, is not
    assert resumed["o2"] == EPOCHS


def test_rungs_json_tells_probes_from_trials_a_rung_cut(tmp_path):
    scheduler = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3, probes=2)
    trained = _run(scheduler, ORDER)
    RungKeeper(scheduler, str(tmp_path)).on_experiment_end([])
    saved = json.loads((tmp_path / "rungs.json").read_text())
    at_three = {rung["group"]: rung for rung in saved if rung["milestone"] == 3}["constant"]
    assert trained["c0"] == 3 and "c0" in at_three["probes"]  # stopped as a probe, not by the rung
    assert {t for rung in saved for t in rung["probes"]} == {"c0", "c1"}
    assert all(set(rung["probes"]) <= set(rung["recorded"]) for rung in saved)


def test_a_scheduler_pickled_before_probes_resumes_and_writes_its_rungs(tmp_path):
    old = make_scheduler(max_epochs=EPOCHS, grace=1, eta=3)
    for name in ("probes", "probe_epochs", "probed"):  # as Tuner.restore unpickles one from an earlier version
        old.__dict__.pop(name, None)
    keeper = RungKeeper(old, str(tmp_path))
    keeper.set_state({"rungs": []})  # its snapshot has no "probed" either
    assert _run(old, ORDER) == _run(make_scheduler(max_epochs=EPOCHS, grace=1, eta=3), ORDER)
    keeper.on_experiment_end([])
    assert [rung["probes"] for rung in json.loads((tmp_path / "rungs.json").read_text())] == [[]] * 6


def test_probes_are_the_random_start_up_of_a_search_that_goes_beyond_it():
    assert probes(160) == 10  # TPE's start-up, Optuna's default
    assert probes(160, warm=4) == 6 and probes(160, warm=12) == 0  # warm trials count towards the start-up
    assert probes(10) == 0 and probes(11) == 10  # a search of its start-up alone names its best among them
    assert probes(160, objectives=("val_acc", "params")) == 0  # MO-ASHA: measured no better


def test_a_search_gets_its_probes_from_its_settings(tmp_path):
    from search import engine, run

    def probes_of(*keys: str, warm: int = 0) -> int:
        return engine.scheduler_for(run.parse(["space=full", *keys, f"storage={tmp_path}"]), warm_trials=warm).probes

    assert probes_of("trials=64") == 10 and probes_of("trials=64", warm=3) == 7
    assert probes_of("budget=smoke") == 0  # 8 trials: all of them random
    assert probes_of("trials=64", "objective=val_acc,params") == 0
    assert list(tmp_path.iterdir()) == []  # settings only: nothing written
