"""How much device-time a warm start saves, measured on recorded learning curves.

Per seed s = 1..S, three simulated searches (search.replay.simulate) over the same record, each
this project's search (HonestOptunaSearch + FairASHA, as tpe-asha in search_efficiency.py):

    earlier   a cold search of --earlier trials (seed 1000 + s): the experiment a user starts from
    cold      a cold search of --trials trials (seed s)
    warm      the same search, warm-started from earlier's finished trials (seed s), as
              warm_start= does it (search.strategy.warm.from_tables on earlier's tables)

Over the seeds, each with its bootstrap 95% interval (2,000 resamples of the seeds, pairs kept
together, percentile), as search_efficiency.py measures:

- cold's final best (the service's one notion of best, results.status.ranked): its interquartile
  mean (IQM: the mean of the middle half) over the seeds;
- the time-to-target ratio, seed by seed: the device-time warm needs until the best it names
  reaches cold's final best, divided by the device-time cold needed to get there; its IQM ("never":
  infinite, when more than a quarter of the seeds never get there), its median, and the share of
  seeds that get there;
- the best found at 1/8, 1/4, 1/2 and all of cold's device-time (its IQM): warm's IQM minus cold's.

The earlier search's own device-time is not counted: it was spent before, for its own sake.

    python benchmarks/warm_start.py --record benchmarks/records/full-cpu-12ep-2026-11-26
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import search_efficiency as efficiency  # noqa: E402  (this folder: the shared statistics and set-up)

from search.replay import records  # noqa: E402
from search.replay.simulate import Simulation, simulate  # noqa: E402
from search.strategy import warm  # noqa: E402
from search.strategy.asha import make_scheduler  # noqa: E402
from search.strategy.searcher import HonestOptunaSearch, probes  # noqa: E402

EARLIER_SEED = 1000  # the earlier search's seed is EARLIER_SEED + s: never one of the compared searches'


def _search(seed: int, trials: int, o: argparse.Namespace, warm_from: Simulation | None = None) -> Simulation:
    record, surrogate, space = (efficiency._WORKER[k] for k in ("record", "surrogate", "space"))
    fixed = {k: v for k, v in space.items() if k not in records.searched(record.params())}
    taken = ()
    if warm_from is not None:
        trials_table, epochs_table = tables(warm_from)
        taken = tuple(warm.from_tables(trials_table, epochs_table, space, record.max_epochs, "earlier")[0])
    searcher = HonestOptunaSearch(max_epochs=record.max_epochs, seed=seed, base=fixed, warm=taken)
    scheduler = make_scheduler(record.max_epochs, o.grace, o.eta, probes=probes(trials, len(taken)))  # as search.engine
    return simulate(surrogate, searcher, scheduler, param_space=space, trials=trials, concurrency=o.concurrency, seed=seed)


def tables(sim: Simulation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated search's trials and epochs tables, with the columns warm.from_tables reads."""
    trials = pd.DataFrame([{**e.config, "trial_id": e.trial_id, "status": e.status} for e in sim.ended])
    epochs = pd.DataFrame([{"trial_id": r.trial_id, "epoch": r.epoch, "val_acc": r.val_acc} for r in sim.results])
    return trials, epochs


def _time_to(seconds: np.ndarray, best: np.ndarray, target: float) -> float:
    reached = np.nonzero(best >= target)[0]
    return float(seconds[reached[0]]) if len(reached) else float("inf")


def _best_at(seconds: np.ndarray, best: np.ndarray, spent: float) -> float:
    at = np.searchsorted(seconds, spent, side="right") - 1
    return float(best[at]) if at >= 0 else 0.0


def one_seed(job: tuple[int, argparse.Namespace]) -> dict:
    """The anytime curves (device-seconds, the best named then) of the cold and the warm search."""
    seed, o = job
    earlier = _search(EARLIER_SEED + seed, o.earlier, o)
    cold, warmed = _search(seed, o.trials, o), _search(seed, o.trials, o, warm_from=earlier)
    return {"seed": seed, "cold": cold.anytime(), "warm": warmed.anytime(), "cold_used": cold.device_seconds()}


def measures(rows: list[dict]) -> dict[str, float]:
    iqm = efficiency.iqm
    target = iqm([row["cold"][1][-1] for row in rows])
    used = iqm([row["cold_used"] for row in rows])
    own = [(_time_to(*row["warm"], row["cold"][1][-1]), _time_to(*row["cold"], row["cold"][1][-1])) for row in rows]
    ratios = [w / c for w, c in own]
    out = {"target": target, "ratio": iqm(ratios), "median": float(np.quantile(ratios, 0.5, method="inverted_cdf")),
           "reached": float(np.mean([np.isfinite(w) for w, _ in own]))}
    for f in efficiency.FRACTIONS:
        out[f"at {f}"] = (iqm([_best_at(*row["warm"], f * used) for row in rows])
                          - iqm([_best_at(*row["cold"], f * used) for row in rows]))
    return out


def summarize(rows: list[dict], resamples: int = efficiency.RESAMPLES, seed: int = 0) -> dict[str, efficiency.Stat]:
    point = measures(rows)
    rng = np.random.default_rng(seed)
    boot = [measures([rows[i] for i in rng.integers(0, len(rows), len(rows))]) for _ in range(resamples)]
    return {key: efficiency.Stat(value, *efficiency.interval([b[key] for b in boot])) for key, value in point.items()}


LABELS = {"target": "cold's final best (IQM)",
          "ratio": "time to cold's final best, warm / cold (IQM)",
          "median": "the same, median", "reached": "seeds where warm reaches it",
          **{f"at {f}": f"best at {f:g} of cold's device-time, warm - cold" for f in efficiency.FRACTIONS}}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", required=True, help="record folder(s) (python -m search.replay.record), comma-separated")
    ap.add_argument("--seeds", type=int, default=20, help="seeds (pairs of searches) 1..S")
    ap.add_argument("--trials", type=int, default=64, help="trials of the cold and the warm search")
    ap.add_argument("--earlier", type=int, default=64, help="trials of the earlier search a warm start takes")
    ap.add_argument("--concurrency", type=int, default=4, help="trials at once")
    ap.add_argument("--grace", type=int, default=1, help="ASHA's first rung, epochs")
    ap.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor")
    ap.add_argument("--jobs", type=int, default=2, help="processes (results do not depend on it)")
    o = ap.parse_args(argv)
    try:
        record = records.load(o.record)
        for key in ("seeds", "trials", "earlier", "concurrency", "jobs"):
            if getattr(o, key) < 1:
                raise ValueError(f"--{key}={getattr(o, key)}: at least 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.monotonic()
    jobs = [(seed, o) for seed in range(1, o.seeds + 1)]
    if o.jobs > 1:
        with ProcessPoolExecutor(o.jobs, initializer=efficiency._setup, initargs=(record.paths,)) as pool:
            rows = list(pool.map(one_seed, jobs))
    else:
        efficiency._setup(record.paths)
        rows = [one_seed(job) for job in jobs]
    print(f"record {','.join(record.paths)}: {record.space}, {record.max_epochs} epochs; {o.seeds} seeds x 3 simulated "
          f"searches (earlier {o.earlier} trials, cold and warm {o.trials} trials each; concurrency {o.concurrency}, "
          f"ASHA grace {o.grace} eta {o.eta}) in {time.monotonic() - start:.0f} s")
    for key, stat in summarize(rows).items():
        print(f"  {LABELS[key]:<52} {stat.show(4)}")
    print(f"  cold's device-time: IQM {efficiency.iqm([row['cold_used'] for row in rows]) / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
