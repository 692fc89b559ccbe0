"""Device-hours as a budget, with made-up epoch times."""

from __future__ import annotations

import math
from types import SimpleNamespace

from search.strategy.spend import DeviceSpend, SpendStopper, unlimited


def test_gpu_seconds_are_epoch_seconds_times_the_gpus_a_trial_holds():
    spend = DeviceSpend(limit_seconds=100, devices_per_trial=0.25)
    for _ in range(8):
        spend.add_epoch(10.0)
    assert spend.spent_seconds == 20.0 and spend.epochs == 8 and spend.hours == 20 / 3600


def test_no_trial_starts_that_the_rest_cannot_pay_to_its_first_rung():
    spend = DeviceSpend(limit_seconds=100, devices_per_trial=1)
    assert spend.affords(3)  # nothing known yet, nothing spent
    for _ in range(7):
        spend.add_epoch(10.0)  # 70 of 100 spent, 10 an epoch
    assert spend.affords(3) and not spend.affords(4)


def test_a_spent_budget_stops_the_search_and_no_budget_never_does():
    searcher = SimpleNamespace(spend=DeviceSpend(limit_seconds=25, devices_per_trial=1))
    stopper = SpendStopper(searcher)
    searcher.spend.add_epoch(20.0)
    assert not stopper.stop_all() and not stopper("t1", {"seconds": 20.0})
    searcher.spend.add_epoch(20.0)
    assert stopper.stop_all() and not searcher.spend.affords(1)
    free = unlimited(0.25)
    free.add_epoch(1e9)
    assert free.limit_seconds == math.inf and free.affords(1000) and not free.exhausted


def _searcher(**kwargs):
    from ray import tune

    from search.strategy.searcher import HonestOptunaSearch

    searcher = HonestOptunaSearch(max_epochs=1, seed=0, **kwargs)
    space = {"lr": tune.loguniform(1e-5, 1e-1), "filters": tune.choice(["8,16", "64,128", "256,512"])}
    searcher.set_search_properties("val_acc", "max", space)
    return searcher


def _finish(searcher, trial_id: str, acc: float, seconds: float = 1.0) -> None:
    result = {"training_iteration": 1, "val_acc": acc, "seconds": seconds}
    searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result)


def test_the_searcher_starts_no_trial_the_budget_cannot_pay_for():
    from ray.tune.search import Searcher

    searcher = _searcher(spend=DeviceSpend(limit_seconds=10, devices_per_trial=1), first_rung=1)
    for i in range(3):
        assert isinstance(searcher.suggest(f"t{i}"), dict)
        _finish(searcher, f"t{i}", 0.5, seconds=3.0)
    assert searcher.suggest("t3") == Searcher.FINISHED  # 1 of 10 device-seconds left, an epoch costs 3
    assert not SpendStopper(searcher).stop_all()  # trials still running may finish their epochs...
    searcher.spend.add_epoch(3.0)
    assert SpendStopper(searcher).stop_all()  # ...until the budget is spent


def test_max_params_refuses_larger_networks_without_counting_them_as_trials():
    from model.config import Config
    from search.strategy.searcher import REFUSED_ATTR

    base = {**Config(padding="same", dense=0).to_flat(), "epochs": 1}
    searcher = _searcher(base=base, max_params=60_000)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    for i, config in enumerate(configs):
        assert config["filters"] == "8,16"  # 64,128 and 256,512 have far more than 60k parameters
        _finish(searcher, f"t{i}", 0.8)
    trials = searcher.study.get_trials(deepcopy=False)
    refused = [t for t in trials if t.user_attrs.get(REFUSED_ATTR)]
    assert searcher.refused == len(refused) > 0
    assert all(t.user_attrs["params"] > 60_000 for t in refused)
    assert len(trials) - len(refused) == 6


def test_tpe_leaves_its_start_up_phase_and_concentrates_on_the_better_region():
    searcher = _searcher(startup_trials=8)
    distance = []
    for i in range(40):
        lr = searcher.suggest(f"t{i}")["lr"]
        distance.append(abs(math.log10(lr) + 3))  # the made-up optimum: lr = 1e-3
        _finish(searcher, f"t{i}", 1 - 0.1 * distance[-1] ** 2)
    random_phase, modelled = distance[:8], distance[-12:]
    assert sorted(modelled)[6] < sorted(random_phase)[4] / 2  # medians: TPE's half as far from 1e-3
