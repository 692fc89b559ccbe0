"""Simulated searches (search.replay.simulate) and the comparison built on them (benchmarks/search_efficiency.py):
the committed 12-epoch CPU record, real Optuna, Ray's and this project's schedulers; no Ray session."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from results.status import ranked
from search.replay import records
from search.replay.simulate import Ended, RandomSearch, Simulation, simulate
from search.replay.surrogate import Surrogate
from search.strategy.asha import make_scheduler
from search.strategy.searcher import HonestOptunaSearch

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "records" / "full-cpu-12ep-2026-11-26"


@pytest.fixture(scope="module")
def record():
    return records.load(str(RECORD))


@pytest.fixture(scope="module")
def surrogate(record):
    return Surrogate(record)


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _ours(record, seed: int, trials: int = 20, concurrency: int = 4) -> Simulation:
    fixed = {k: v for k, v in record.param_space().items() if k not in records.searched(record.params())}
    return simulate(Surrogate(record), HonestOptunaSearch(max_epochs=record.max_epochs, seed=seed, base=fixed),
                    make_scheduler(record.max_epochs, 1, 3), param_space=record.param_space(), trials=trials,
                    concurrency=concurrency, seed=seed)


def _trace(sim: Simulation) -> list:
    return [(r.time, r.trial_id, r.epoch, r.val_acc) for r in sim.results] + \
           [(e.trial_id, e.status, e.epochs_run, e.last_val_acc, tuple(sorted(e.config.items()))) for e in sim.ended]


def test_a_simulated_search_is_the_same_twice_and_another_with_another_seed(record):
    for concurrency in (1, 4):
        first, again, other = (_ours(record, seed, concurrency=concurrency) for seed in (1, 1, 2))
        assert _trace(first) == _trace(again)
        assert _trace(first) != _trace(other)
        assert {e.status for e in first.ended} == {"completed", "pruned"}  # FairASHA stopped some, not all
        assert len(first.ended) == 20


def test_at_most_concurrency_trials_run_and_slots_refill_at_once(record):
    sim = _ours(record, 3, trials=24, concurrency=3)
    starts = {}
    for r in sim.results:  # a trial starts when its first epoch began: its end minus that epoch's seconds
        if r.epoch == 1:  # rounded: the subtraction may land a float's width before the end it follows
            starts[r.trial_id] = round(r.time - r.seconds, 9)
    ends = {e.trial_id: round(e.time, 9) for e in sim.ended}
    for t in sorted(set(starts.values()) | set(ends.values())):
        running = sum(starts[i] <= t < ends[i] for i in starts)
        assert running <= 3
    # the first three start together; every later trial starts when another ends
    assert sorted(starts.values())[:3] == [0.0, 0.0, 0.0]
    assert all(np.isclose(s, 0.0) or min(abs(s - e) for e in ends.values()) < 1e-9 for s in starts.values())


class Recorder:
    """Wraps a searcher or scheduler and logs every call the simulation makes."""

    def __init__(self, inner, log: list, name: str) -> None:
        self.inner, self.log, self.name = inner, log, name

    def __getattr__(self, attr):
        method = getattr(self.inner, attr)
        if not attr.startswith("on_trial"):
            return method

        def call(*args, **kwargs):
            if self.name == "scheduler":  # (controller, trial[, result])
                trial_id, result = args[1].trial_id, args[2] if len(args) > 2 else None
            else:  # (trial_id[, result]) or (trial_id, result=...)
                trial_id, result = args[0], args[1] if len(args) > 1 else kwargs.get("result")
            self.log.append((self.name, attr, trial_id, (result or {}).get("training_iteration")))
            return method(*args, **kwargs)
        return call


def test_calls_follow_tunes_order(record, surrogate):
    log: list = []
    searcher = Recorder(RandomSearch(5), log, "searcher")
    scheduler = Recorder(ASHAScheduler(time_attr="training_iteration", max_t=12, grace_period=1, reduction_factor=3),
                         log, "scheduler")
    sim = simulate(surrogate, searcher, scheduler, param_space=record.param_space(), trials=12, concurrency=2, seed=5)
    for ended in sim.ended:
        mine = [c for c in log if c[2] == ended.trial_id]
        assert mine[0] == ("scheduler", "on_trial_add", ended.trial_id, None)
        # the scheduler sees every epoch; the searcher every epoch but the one that ASHA stopped (it stops
        # completed trials too, at max_t): that one it gets only with on_trial_complete
        assert [c[3] for c in mine if c[:2] == ("scheduler", "on_trial_result")] == list(range(1, ended.epochs_run + 1))
        assert [c[3] for c in mine if c[:2] == ("searcher", "on_trial_result")] == list(range(1, ended.epochs_run))
        assert mine[-2:] == [("scheduler", "on_trial_complete", ended.trial_id, ended.epochs_run),
                             ("searcher", "on_trial_complete", ended.trial_id, ended.epochs_run)]
    assert {e.epochs_run for e in sim.ended if e.status == "pruned"} <= {1, 3, 9}  # ASHA's rungs


def test_device_seconds_are_the_answered_epochs(record, surrogate):
    sim = simulate(surrogate, RandomSearch(7), FIFOScheduler(), param_space=record.param_space(), trials=6,
                   concurrency=2, seed=7)
    total = sum(surrogate.answer(e.config, 7).curves["seconds"].sum() for e in sim.ended)
    assert np.isclose(sim.device_seconds(), total) and all(e.status == "completed" for e in sim.ended)
    assert [r.time for r in sim.results] == sorted(r.time for r in sim.results)


def test_the_best_is_the_services_completed_before_pruned():
    ended = [Ended(1.0, "a", {}, "pruned", 3, 0.9), Ended(2.0, "b", {}, "completed", 12, 0.6),
             Ended(3.0, "c", {}, "pruned", 9, 0.95), Ended(4.0, "d", {}, "completed", 12, 0.7)]
    sim = Simulation(results=[], ended=ended)
    sim.results = [type("R", (), {"time": t, "seconds": 1.0})() for t in (1.0, 2.0, 3.0, 4.0)]
    seconds, best = sim.anytime()
    assert list(best) == [0.9, 0.6, 0.6, 0.7] and list(seconds) == [1.0, 2.0, 3.0, 4.0]
    frame = pd.DataFrame([{"trial_id": e.trial_id, "status": e.status, "epochs_run": e.epochs_run,
                           "last_val_acc": e.last_val_acc} for e in ended])
    assert sim.best().trial_id == ranked(frame)["trial_id"].iloc[0] == "d"


def test_the_stock_searcher_runs_in_the_simulation(record, surrogate):
    sim = simulate(surrogate, OptunaSearch(sampler=optuna.samplers.TPESampler(seed=1, multivariate=True)),
                   ASHAScheduler(time_attr="training_iteration", max_t=12, grace_period=1, reduction_factor=3),
                   param_space=record.param_space(), trials=12, concurrency=4, seed=1)
    assert len(sim.ended) == 12 and sim.best() is not None


# --- the comparison -----------------------------------------------------------------------------
def _benchmark():
    """benchmarks/search_efficiency.py as a module (benchmarks/ is no package); registered, so that
    its dataclasses resolve and its worker processes find its functions."""
    if "search_efficiency" not in sys.modules:
        spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "benchmarks" / "search_efficiency.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["search_efficiency"] = module
        spec.loader.exec_module(module)
    return sys.modules["search_efficiency"]


def test_iqm_and_interval():
    bench = _benchmark()
    assert bench.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == 4.5  # the middle half: 3, 4, 5, 6
    assert bench.iqm([1, 2, 3, np.inf]) == 2.5 and bench.iqm([1, np.inf, np.inf, np.inf]) == np.inf
    assert bench.interval([np.inf] * 10 + [1.0] * 990) == (1.0, 1.0)


def test_the_comparison_is_the_same_in_one_process_or_two(record):
    bench = _benchmark()
    chosen = [s for s in bench.STRATEGIES if s.key in ("tpe-asha", "stock-asha", "random-fifo")]
    o = bench.Options(trials=10, concurrency=2, grace=1, eta=3)
    one, two = (bench.run_all(record, o, chosen, [1, 2, 3], jobs) for jobs in (1, 2))
    assert [(x.strategy, x.seed, list(x.best), list(x.seconds)) for x in one] == \
           [(x.strategy, x.seed, list(x.best), list(x.seconds)) for x in two]
    a, b = (bench.summarize(x, chosen, resamples=50) for x in (one, two))
    assert bench.tables(a, chosen, "min") == bench.tables(b, chosen, "min")
    assert a["stats"]["random-fifo"]["final"].low <= a["target"] <= a["stats"]["random-fifo"]["final"].high


def test_a_device_budget_ends_the_search_as_the_spend_stopper_does(record, surrogate):
    fixed = {k: v for k, v in record.param_space().items() if k not in records.searched(record.params())}
    budget = 120.0
    sim = simulate(surrogate, HonestOptunaSearch(max_epochs=12, seed=4, base=fixed), make_scheduler(12, 1, 3),
                   param_space=record.param_space(), trials=10**6, concurrency=4, seed=4, device_budget=budget)
    spent = np.cumsum([r.seconds for r in sim.results])
    assert spent[-2] < budget <= spent[-1]  # the epoch that reached the budget is the last one reported
    reported = {r.trial_id for r in sim.results}
    assert {e.trial_id for e in sim.ended} == reported  # every trial that reported ended, once
    cut = [e for e in sim.ended if e.time == sim.results[-1].time]
    assert cut and all(e.status == "pruned" or e.epochs_run == 12 for e in cut)  # the running ones: stopped early
