"""What TPE makes of refusals and of trials running side by side: search.strategy.searcher.HonestOptunaSearch
driven directly (suggest, then made-up results), no Ray cluster, no training.

The made-up objectives depend on the learning rate alone; the network sizes decide the refusals
(max_params counts real parameters, on PyTorch's meta device).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math

import optuna
import pytest
from optuna.trial import TrialState
from ray import tune

from model.config import Config
import internals
from search.strategy.searcher import REFUSED_ATTR, HonestOptunaSearch

STARTUP = 6  # TPE's random start-up, in trials
BASE = {**Config(padding="same").to_flat(), "epochs": 1}
SIZES = {
    "filters": tune.choice(["8,16", "16,32", "32,64", "64,128", "128,256"]),
    "dense": tune.choice([0, 32, 128, 512]),
    "lr": tune.loguniform(1e-4, 1e-1),
}
SMALL = 5_000  # max_params: of the 20 shapes above only filters 8,16 without a dense layer (4,418) fits


def _searcher(space: dict, seed: int = 0, **kwargs) -> HonestOptunaSearch:
    searcher = HonestOptunaSearch(max_epochs=1, seed=seed, startup_trials=STARTUP, **kwargs)
    searcher.set_search_properties("val_acc", "max", space)
    return searcher


def _finish(searcher: HonestOptunaSearch, trial_id: str, acc: float) -> None:
    result = {"training_iteration": 1, "val_acc": acc}
    searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result)


def _one_at_a_time(searcher: HonestOptunaSearch, objective, trials: int) -> list[dict]:
    configs = []
    for i in range(trials):
        configs.append(searcher.suggest(f"t{i}"))
        _finish(searcher, f"t{i}", objective(configs[-1]))
    return configs


def _resolve(dotted: str):
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_refusals_neither_end_tpes_random_start_up_nor_enter_its_good_set(monkeypatch):
    splits = []  # each time TPE models the results: (accepted trials finished, refused trials in its good set)
    split = _resolve(internals.TPE_SPLIT)

    def watched(study, trials, n_below):
        good, bad = split(study, trials, n_below)
        accepted = sum(t.state.is_finished() and not t.user_attrs.get(REFUSED_ATTR) for t in trials)
        splits.append((accepted, [t.number for t in good if t.user_attrs.get(REFUSED_ATTR)]))
        return good, bad

    monkeypatch.setattr(internals.TPE_SPLIT, watched)
    low = _searcher(SIZES, base=BASE, max_params=SMALL)
    high = _searcher(SIZES, base=BASE, max_params=SMALL)
    runs = [_one_at_a_time(low, lambda c: -abs(math.log10(c["lr"]) + 3.5), 12),  # best at lr 3e-4...
            _one_at_a_time(high, lambda c: -abs(math.log10(c["lr"]) + 1.5), 12)]  # ...or at 3e-2
    assert min(low.refused, high.refused) > STARTUP  # refusals enough to end the start-up, were they counted
    # A random start-up does not look at the results: both objectives get the same first accepted trials.
    assert runs[0][:STARTUP] == runs[1][:STARTUP]
    assert runs[0][STARTUP:] != runs[1][STARTUP:]  # and then TPE does look
    # TPE models the results only once STARTUP accepted trials have finished, and never ranks a refusal good.
    assert splits and min(accepted for accepted, _ in splits) >= STARTUP
    assert [refused for _, refused in splits if refused] == []


def test_a_stopped_trial_counts_for_tpe_by_its_accuracy_at_the_stop_and_stays_pruned_in_the_study(monkeypatch):
    goods = []  # each time TPE models the results: the Optuna numbers in its good set
    split = _resolve(internals.TPE_SPLIT)

    def watched(study, trials, n_below):
        good, bad = split(study, trials, n_below)
        goods.append([t.number for t in good])
        return good, bad

    monkeypatch.setattr(internals.TPE_SPLIT, watched)
    searcher = HonestOptunaSearch(max_epochs=3, seed=0, startup_trials=STARTUP)
    searcher.set_search_properties("val_acc", "max", SIZES)
    for i in range(STARTUP + 2):  # all run their 3 epochs at 0.5 to 0.57 but t3, stopped at epoch 1 with 0.95
        searcher.suggest(f"t{i}")
        epochs = 1 if i == 3 else 3
        for epoch in range(1, epochs + 1):
            result = {"training_iteration": epoch, "val_acc": 0.95 if i == 3 else 0.5 + 0.01 * i}
            searcher.on_trial_result(f"t{i}", result)
        searcher.on_trial_complete(f"t{i}", result)
    searcher.suggest("next")
    stopped = internals.optuna_trial(searcher, "t3").number
    assert goods and goods[-1] == [stopped]  # Optuna's own order would rank it below every complete trial
    assert searcher.study.trials[stopped].state == TrialState.PRUNED  # readers see what happened


def test_tpe_models_its_good_region_on_the_best_five_percent_of_the_trials(monkeypatch):
    sizes = []  # each time TPE models the results: (trials it has seen finish, trials in its good set)
    split = _resolve(internals.TPE_SPLIT)

    def watched(study, trials, n_below):
        good, bad = split(study, trials, n_below)
        sizes.append((sum(t.state != TrialState.RUNNING for t in trials), len(good)))
        return good, bad

    monkeypatch.setattr(internals.TPE_SPLIT, watched)
    _one_at_a_time(_searcher(SIZES), lambda c: math.log10(c["lr"]), 41)
    seen = dict(sizes)
    assert max(seen) == 40
    # Optuna's default would take the best 10%: 4 of 40, 3 of 21.
    assert (seen[40], seen[21], seen[20], seen[STARTUP]) == (2, 2, 1, 1)


SPREAD = {"lr": tune.loguniform(1e-4, 1e-1), "dense_dropout": tune.uniform(0.0, 0.6)}


def _position(config: dict) -> tuple[float, float]:
    """Where a config lies in the unit square TPE sees: log-lr and dropout, each scaled to [0, 1]."""
    return (math.log10(config["lr"]) + 4) / 3, config["dense_dropout"] / 0.6


def _peak(config: dict) -> float:
    x, y = _position(config)
    return -((x - 0.3) ** 2 + (y - 0.7) ** 2)


@pytest.mark.parametrize("liar_by_default", [True, False], ids=["optuna-5-default", "no-liar-by-default"])
def test_trials_suggested_side_by_side_are_spread_and_the_same_for_a_seed(monkeypatch, liar_by_default):
    # Optuna 5.0 turned TPE's constant liar on by default (optuna#6738); the searcher must not depend on it.
    init = optuna.samplers.TPESampler.__init__
    monkeypatch.setattr(optuna.samplers.TPESampler, "__init__",
                        lambda self, *, constant_liar=liar_by_default, **kw: init(self, constant_liar=constant_liar, **kw))

    def eight_at_once(seed: int) -> list[tuple[float, float]]:
        searcher = _searcher(SPREAD, seed=seed)
        _one_at_a_time(searcher, _peak, 2 * STARTUP)  # past the random start-up: TPE models the results
        return [_position(searcher.suggest(f"side{i}")) for i in range(8)]  # none of them has finished

    batch = eight_at_once(seed=0)
    assert eight_at_once(seed=0) == batch
    closest = min(math.dist(a, b) for a, b in itertools.combinations(batch, 2))
    assert closest > 0.05, f"two of eight trials running side by side are {closest:.3f} apart"


def test_a_freed_slot_goes_to_a_staged_trial_before_tpe_suggests_again():
    # Tune asks the searcher before it hands freed actors to waiting trials: with 2 slots and 3 trials
    # allowed, the third waits staged, and the suggestion asked right after a trial ends is deferred
    # (None) so that the staged trial takes the slot in that step; the next ask gets a configuration.
    searcher = _searcher({"lr": SIZES["lr"]}, slots=2)
    assert all(isinstance(searcher.suggest(f"t{i}"), dict) for i in range(3))  # 2 running, 1 staged
    _finish(searcher, "t0", 0.5)
    assert searcher.suggest("t3") is None  # the slot is t2's first
    assert isinstance(searcher.suggest("t3"), dict)
    _finish(searcher, "t1", 0.6), _finish(searcher, "t2", 0.7)  # two end: one live trial, none staged
    assert isinstance(searcher.suggest("t4"), dict)  # nothing staged to take a slot: suggested at once
    plain = _searcher({"lr": SIZES["lr"]})  # nothing staged (slots=None): never deferred
    assert all(isinstance(plain.suggest(f"t{i}"), dict) for i in range(3))
    _finish(plain, "t0", 0.5)
    assert isinstance(plain.suggest("t3"), dict)


def test_the_slots_of_a_search_are_what_its_resources_fit_when_fewer_than_its_concurrency():
    from search.engine import trials_at_once
    from search.run import parse

    s = parse(["space=full", "concurrency=8", "cpus_per_trial=0.25", "gpus_per_trial=0"])
    assert trials_at_once(s, {"CPU": 2.0}) is None  # 8 fit: none staged
    assert trials_at_once(s, {"CPU": 1.0}) == 4  # 4 fit, 4 staged
    gpu = dataclasses.replace(s, cpus_per_trial=1, gpus_per_trial=0.25)
    assert trials_at_once(gpu, {"CPU": 16.0, "GPU": 1.0}) == 4  # the GPU decides
    assert trials_at_once(gpu, {"CPU": 16.0, "GPU": 3.0}) is None  # 12 fit
