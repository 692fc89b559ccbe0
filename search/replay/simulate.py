"""Replayed searches on a simulated clock: the real searcher and scheduler, no Tune loop, no sleep.

`simulate` runs one search the way Ray Tune's controller would, over the curves a search.replay.surrogate
Surrogate answers, as a discrete-event simulation (syne-tune's simulated backend is the model):

- at most `concurrency` trials run; whenever a slot is free the searcher is asked for the next
  configuration (Searcher.suggest, with Tune's trial config: the param space's fixed values and the
  suggestion), the scheduler is told of the new trial (on_trial_add), and the trial's curve is
  fixed then (Surrogate.answer with the search's seed), and its parameters counted
  (search.replay.surrogate.trial_params), reported with every result as the trainable does;
- every epoch of a running trial is an event at the simulated time its recorded (or predicted)
  seconds end; events are handled in time order (ties: in the order they were scheduled), each as
  TuneController._process_trial_result handles a result: the scheduler first (on_trial_result);
  on CONTINUE the searcher gets the result (on_trial_result) and the trial goes on, or, after its
  last epoch, ends as a function trainable that returns does; on STOP the searcher never sees that
  result as a result. A trial that ends is told to the scheduler, then to the searcher
  (on_trial_complete, with its last result), as TuneController.stop_trial does; its slot frees.

No sleeping and no threads, so a simulated search is the same at every run for its seed and
concurrency, and takes the searcher's and scheduler's own CPU time only (a 64-trial TPE search:
about a second). What it leaves out: Tune's own seconds per trial start and per result, and the
part of an epoch a trial may run between reporting and being stopped.

The schedulers see `SimTrial` in place of ray.tune.experiment.Trial: the trial id and the trial's
config are all that Ray's ASHAScheduler, FIFOScheduler and search.strategy.asha.FairASHA read of a trial;
they get None as the TuneController, which none of them reads. `RandomSearch` draws each
configuration at random (Tune's domains, seeded), as BasicVariantGenerator does for a param space
without grid search, but as a Searcher, so that it takes the same calls as the others.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from results.status import COMPLETED, PRUNED, ran_to_the_end, ranked
from search.replay.surrogate import Surrogate, trial_params
from search.settings import METRIC, MODE, draw_config


@dataclass(frozen=True)
class SimTrial:
    """What a scheduler reads of a Tune trial (see the module docstring)."""

    trial_id: str
    config: dict


@dataclass(frozen=True)
class Result:
    time: float  # simulated seconds since the search started, when this epoch ended
    trial_id: str
    epoch: int
    seconds: float  # the epoch's device-seconds (recorded or predicted)
    val_acc: float
    source: str  # "recorded" or "predicted"


@dataclass(frozen=True)
class Ended:
    """A trial at its end, with what results.status ranks it by."""

    time: float
    trial_id: str
    config: dict
    status: str  # completed or pruned (results.status)
    epochs_run: int
    last_val_acc: float
    params: int | None = None  # trainable parameters (objective=val_acc,params)


@dataclass
class Simulation:
    results: list[Result] = field(default_factory=list)  # in time order
    ended: list[Ended] = field(default_factory=list)  # in time order

    def device_seconds(self) -> float:
        return float(sum(r.seconds for r in self.results))

    def best(self) -> Ended | None:
        """The best trial as the service names it (results.status.ranked) among those ended."""
        return _best(self.ended)

    def anytime(self) -> tuple[np.ndarray, np.ndarray]:
        """(device-seconds spent, the service's best trial's val_acc) each time a trial ends: what
        the service would name the best if the search stopped there. Device-seconds: every epoch
        reported so far, running trials' included."""
        spent = np.cumsum([r.seconds for r in self.results])
        times = np.array([r.time for r in self.results])
        seconds, best, leader = [], [], None
        for trial in self.ended:
            leader = trial if leader is None else _best([leader, trial])
            seconds.append(spent[np.searchsorted(times, trial.time, side="right") - 1])
            best.append(leader.last_val_acc)
        return np.array(seconds), np.array(best)


def _best(trials: list[Ended]) -> Ended | None:
    if not trials:
        return None
    frame = pd.DataFrame([{"trial_id": t.trial_id, "status": t.status, "epochs_run": t.epochs_run,
                           "last_val_acc": t.last_val_acc} for t in trials])
    first = ranked(frame)["trial_id"].iloc[0]
    return next(t for t in trials if t.trial_id == first)


class RandomSearch(Searcher):
    """Each configuration drawn at random from the param space's domains (seeded)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.space: dict | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        self.space = config
        self._metric, self._mode = metric, mode
        return True

    def suggest(self, trial_id: str) -> dict:
        return {k: v for k, v in draw_config(self.space, self.rng).items() if isinstance(self.space[k], Domain)}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def simulate(
    surrogate: Surrogate, searcher: Searcher, scheduler: TrialScheduler, *, param_space: dict[str, Any],
    trials: int, concurrency: int, seed: int, device_budget: float | None = None,
) -> Simulation:
    """One search of `trials` trials, `concurrency` at a time, answered by `surrogate` with `seed`
    (module docstring). The searcher and the scheduler get metric and mode here, as Tune gives them.

    device_budget: device-seconds after which the search ends, as search.strategy.spend.SpendStopper ends a
    search: once the epochs reported add up to it, no epoch more is reported and every running
    trial ends where it stands (pruned, as results.status names a trial stopped early, with its
    last result; one that reported nothing is not a trial of the report)."""
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency}: at least 1 trial must run")
    if not searcher.set_search_properties(METRIC, MODE, param_space):
        raise ValueError(f"{type(searcher).__name__} refused metric={METRIC}, mode={MODE} and the param space")
    scheduler.set_search_properties(METRIC, MODE)
    max_epochs = surrogate.max_epochs
    fixed = {k: v for k, v in param_space.items() if not isinstance(v, Domain)}
    out = Simulation()
    events: list[tuple[float, int, str, int]] = []  # (time, order scheduled, trial id, epoch)
    order = itertools.count()
    running: dict[str, tuple[SimTrial, dict[str, np.ndarray], str]] = {}
    created, finished, now, spent = 0, False, 0.0, 0.0
    last: dict[str, dict] = {}  # trial id -> its last result
    params: dict[str, int] = {}  # trial id -> its network's parameters, reported with every result

    def start_trials() -> None:
        nonlocal created, finished
        while len(running) < concurrency and created < trials and not finished and not over_budget():
            trial_id = f"t{created:05d}"
            suggested = searcher.suggest(trial_id)
            if suggested == Searcher.FINISHED:
                finished = True
                return
            if suggested is None:
                if not running:
                    raise RuntimeError(f"{type(searcher).__name__} suggested nothing while no trial ran")
                return
            trial = SimTrial(trial_id, {**fixed, **suggested})
            scheduler.on_trial_add(None, trial)
            answer = surrogate.answer(trial.config, seed)
            running[trial_id] = (trial, answer.curves, answer.source)
            params[trial_id] = trial_params(trial.config, answer)
            heapq.heappush(events, (now + float(answer.curves["seconds"][0]), next(order), trial_id, 1))
            created += 1

    def over_budget() -> bool:
        return device_budget is not None and spent >= device_budget

    def end(trial: SimTrial, result: dict) -> None:
        scheduler.on_trial_complete(None, trial, result)
        searcher.on_trial_complete(trial.trial_id, result=result)
        epochs = result["training_iteration"]
        status = COMPLETED if ran_to_the_end(epochs, max_epochs) else PRUNED
        out.ended.append(Ended(now, trial.trial_id, trial.config, status, epochs, result[METRIC], result["params"]))
        del running[trial.trial_id]

    start_trials()
    while events:
        now, _, trial_id, epoch = heapq.heappop(events)
        trial, curves, source = running[trial_id]
        values = {k: float(v[epoch - 1]) for k, v in curves.items()}
        result = {"training_iteration": epoch, "epoch": epoch, **values, "params": params[trial_id], "trial_id": trial_id,
                  "done": False}
        out.results.append(Result(now, trial_id, epoch, values["seconds"], values[METRIC], source))
        spent += values["seconds"]
        last[trial_id] = result
        decision = scheduler.on_trial_result(None, trial, result)
        if decision == TrialScheduler.STOP:
            end(trial, {**result, "done": True})
        elif decision == TrialScheduler.CONTINUE:
            searcher.on_trial_result(trial_id, result)
            if epoch >= max_epochs:  # the trainable returns: Tune stops the trial with its last result
                end(trial, {**result, "done": True})
            else:
                heapq.heappush(events, (now + float(curves["seconds"][epoch]), next(order), trial_id, epoch + 1))
        else:
            raise ValueError(f"{type(scheduler).__name__} decided {decision}: the simulation continues or stops trials only")
        if over_budget():
            for trial_id in sorted(running, key=lambda t: int(t[1:])):
                if trial_id in last:
                    end(running[trial_id][0], {**last[trial_id], "done": True})
            break
        start_trials()
    return out
