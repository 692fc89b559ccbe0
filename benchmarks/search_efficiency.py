"""Which search finds good models fastest, measured on recorded learning curves (search.replay).

Five strategies, each run for S seeds over the same record, through real Ray Tune searches whose
trials replay curves instead of training:

    tpe-asha      this project's search: HonestOptunaSearch (TPE told the truth) + ASHA (search.asha)
    stock-asha    Ray's own OptunaSearch (same TPE sampler) + the same ASHA
    random-asha   Tune's random sampling + the same ASHA
    random-fifo   Tune's random sampling, every trial to max_epochs
    tpe-fifo      HonestOptunaSearch, every trial to max_epochs

For each search, the best validation accuracy reported so far (any trial, any epoch) as a function
of simulated device-time: the recorded seconds of every epoch that has reached the driver, in the
order they reached it (epochs still running are not counted). Printed: the final best (median and
range over seeds), the device-time used, and the device-time each needs to reach random-fifo's
final best (the median over its seeds); one PNG of the anytime curves (median, interquartile band).

    python benchmarks/search_efficiency.py --record benchmarks/records/full-cpu-2026-11-26

All searches run in one Ray session, `--parallel` at a time (threads of one driver).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import optuna

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# A search thread that outlives this driver's Ray (Ctrl-C, SIGTERM) must fail, not let Ray's
# auto-init join whatever other Ray instance runs on this machine.
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
# As search.engine.quiet (which would import torch into every driver): no Tune tables.
os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
# 1,600 short trials: Tune's per-result work is the cost. No experiment snapshots but the last (a
# benchmark search is never resumed), and only the JSON result log (search.replay asks for it), not
# CSV and TensorBoard files: together about 40% less CPU.
os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "1000000"
os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
# Ray's raylet starts spare worker processes ahead of actor requests by default: here that doubled
# the worker processes started (about a second of CPU each) without making any search faster.
os.environ.setdefault("RAY_enable_worker_prestart", "0")

from ray import tune  # noqa: E402
from ray.tune.search import BasicVariantGenerator  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from search import records  # noqa: E402
from search.asha import make_scheduler  # noqa: E402
from search.replay import CURVE_KEYS, Surrogate, budget_of, replay_trainable, replay_tuner, time_scale_for  # noqa: E402
from search.searcher import HonestOptunaSearch  # noqa: E402

from search.settings import METRIC  # noqa: E402


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    searcher: str  # "honest", "stock" or "random"
    asha: bool


STRATEGIES = (
    Strategy("tpe-asha", "TPE + ASHA (ours)", "honest", True),
    Strategy("stock-asha", "stock OptunaSearch + ASHA", "stock", True),
    Strategy("random-asha", "random + ASHA", "random", True),
    Strategy("random-fifo", "random + FIFO", "random", False),
    Strategy("tpe-fifo", "TPE + FIFO", "honest", False),
)
BASELINE = "random-fifo"  # whose final best the others race to


@dataclass(frozen=True)
class Options:
    trials: int
    concurrency: int
    grace: int
    eta: int
    time_scale: float  # sleep per simulated second
    storage: str


@dataclass(frozen=True)
class Search:
    strategy: str
    seed: int
    events: list[tuple[str, int, float, float, str]]  # (trial, epoch, seconds, val_acc, node) in arrival order
    wall: float  # seconds Tuner.fit took

    def anytime(self) -> tuple[np.ndarray, np.ndarray]:
        """(device-seconds so far, best val_acc so far) after each result."""
        seconds = np.cumsum([e[2] for e in self.events])
        return seconds, np.maximum.accumulate([e[3] for e in self.events])

    def time_to(self, target: float) -> float:
        seconds, best = self.anytime()
        reached = np.nonzero(best >= target)[0]
        return float(seconds[reached[0]]) if len(reached) else float("inf")


class Arrivals(tune.Callback):
    """Every result in the order the driver (searcher and scheduler) received it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, float, float, str]] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.events.append((trial.trial_id, result["epoch"], result["seconds"], result[METRIC], result["node"]))


def searcher(strategy: Strategy, record: records.Record, seed: int, concurrency: int):
    if strategy.searcher == "honest":
        fixed = {k: v for k, v in record.param_space().items() if k not in records.searched(record.params())}
        return HonestOptunaSearch(max_epochs=record.max_epochs, seed=seed, base=fixed)
    if strategy.searcher == "stock":
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))  # as HonestOptunaSearch's
    return BasicVariantGenerator(max_concurrent=concurrency, random_state=seed)


def run_search(record: records.Record, trainable: str, strategy: Strategy, seed: int, o: Options) -> Search:
    """One replayed search; `trainable` is the name its replay_trainable was registered under."""
    arrivals = Arrivals()
    max_epochs = record.max_epochs
    run = {"space": record.space, "budget": "replay", "trials": o.trials, **budget_of(record),
           "grace": o.grace if strategy.asha else max_epochs, "eta": o.eta, "concurrency": o.concurrency, "seed": seed,
           "name": f"{strategy.key}-{seed}", "strategy": strategy.key}
    tuner = replay_tuner(
        trainable, record, run, time_scale=o.time_scale, storage=o.storage, callbacks=[arrivals],
        search_alg=searcher(strategy, record, seed, o.concurrency),
        scheduler=make_scheduler(max_epochs, o.grace, o.eta) if strategy.asha else None,
    )
    start = time.monotonic()
    tuner.fit()
    return Search(strategy.key, seed, arrivals.events, time.monotonic() - start)


def run_all(
    record: records.Record, o: Options, strategies: list[Strategy], seeds: list[int], parallel: int
) -> list[Search]:
    """Every (strategy, seed) search in one Ray session, `parallel` at a time (threads of this driver).

    Each search's trainable is registered under its own name first: Tune registers a trainable
    passed as an object during fit(), by function name, in a registry that concurrent fits would
    share (same name, another seed) and corrupt (it is not thread-safe)."""
    from search.ray_session import ray_session

    surrogate = Surrogate(record)
    jobs = [(s, seed) for seed in seeds for s in strategies]
    with ray_session():
        names = {}
        for strategy, seed in jobs:
            names[strategy.key, seed] = f"replay-{strategy.key}-{seed}"
            tune.register_trainable(names[strategy.key, seed], replay_trainable(surrogate, seed, o.time_scale))
        pool = ThreadPoolExecutor(parallel)
        try:
            return list(pool.map(lambda job: run_search(record, names[job[0].key, job[1]], *job, o), jobs))
        finally:  # after Ctrl-C: start no more searches; leaving ray_session ends the running ones
            pool.shutdown(wait=False, cancel_futures=True)


# --- the comparison ---
def summarize(searches: list[Search], strategies: list[Strategy]) -> tuple[list[dict], float]:
    """One row per strategy, and the target: the median final best of random-fifo."""
    final = {s.key: [max(x.anytime()[1]) for x in searches if x.strategy == s.key] for s in strategies}
    used = {s.key: [x.anytime()[0][-1] for x in searches if x.strategy == s.key] for s in strategies}
    target = float(np.median(final[BASELINE])) if BASELINE in final else float("nan")
    baseline_time = float(np.median(used[BASELINE])) if BASELINE in used else float("nan")
    rows = []
    for s in strategies:
        times = [x.time_to(target) for x in searches if x.strategy == s.key]
        reached = [t for t in times if np.isfinite(t)]
        median_time = float(np.median(times))  # inf when fewer than half the seeds got there
        rows.append({
            "strategy": s.label,
            "final_median": float(np.median(final[s.key])),
            "final_min": float(np.min(final[s.key])),
            "final_max": float(np.max(final[s.key])),
            "device_seconds": float(np.median(used[s.key])),
            "time_to_target": median_time,
            "reached": f"{len(reached)}/{len(times)}",
            "fraction_of_baseline": median_time / baseline_time,
        })
    return rows, target


def table(rows: list[dict], target: float, unit: str) -> str:
    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    lines = [
        f"| strategy | best val_acc: median [min, max] | device-{unit} used (median) | device-{unit} to reach "
        f"{target:.4f} (median; seeds that reach it) | share of random + FIFO's device-time |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        to_target = "never" if not np.isfinite(r["time_to_target"]) else f"{r['time_to_target'] / scale:.1f}"
        share = "-" if not np.isfinite(r["fraction_of_baseline"]) else f"{r['fraction_of_baseline']:.2f}"
        lines.append(
            f"| {r['strategy']} | {r['final_median']:.4f} [{r['final_min']:.4f}, {r['final_max']:.4f}] | "
            f"{r['device_seconds'] / scale:.1f} | {to_target} ({r['reached']}) | {share} |"
        )
    return "\n".join(lines)


def plot(searches: list[Search], strategies: list[Strategy], target: float, path: str, title: str, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    ends = [x.anytime()[0] for x in searches]
    grid = np.geomspace(min(e[0] for e in ends), max(e[-1] for e in ends), 300)
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in strategies:
        curves = []
        for x in (x for x in searches if x.strategy == s.key):
            seconds, best = x.anytime()
            # The best so far at each grid time: NaN before the first result; a search that has ended
            # keeps its final best (it found nothing more), so every seed counts to the right edge.
            at = np.searchsorted(seconds, grid, side="right") - 1
            curves.append(np.where(at >= 0, best[np.maximum(at, 0)], np.nan))
        curves = np.array(curves)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # grid times before a seed's first result are NaN
            median = np.nanmedian(curves, axis=0)
            low, high = np.nanpercentile(curves, 25, axis=0), np.nanpercentile(curves, 75, axis=0)
        line, = ax.plot(grid / scale, median, label=s.label)
        ax.fill_between(grid / scale, low, high, color=line.get_color(), alpha=0.15)
        used = np.median([x.anytime()[0][-1] for x in searches if x.strategy == s.key])
        ax.plot([used / scale], [np.nanmedian(curves[:, -1])], "o", color=line.get_color())  # where the searches end
    ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label="random + FIFO's final best (median)")
    ax.set_xscale("log")
    ax.set_xlabel(f"simulated device-{unit} (sum of recorded epoch seconds); dot: median device-{unit} used")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(title, fontsize=9)
    finals = [max(x.anytime()[1]) for x in searches]
    ax.set_ylim(np.percentile(finals, 0) - 0.1, max(finals) + 0.01)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def surrogate_quality(record: records.Record, neighbours: list[int]) -> list[str]:
    """Leave one configuration out (all its seeds): predict its final val_acc from the others."""
    surrogate = Surrogate(record)
    val_acc = CURVE_KEYS.index("val_acc")
    rows = {}  # configuration -> (one of its trial rows, its trial ids)
    for row in record.trials.to_dict("records"):
        rows.setdefault(surrogate.key(row), (row, []))[1].append(row["trial_id"])
    recorded = np.array([np.mean([r[val_acc, -1] for r in surrogate.runs[key]]) for key in rows])
    lines = []
    for k in neighbours:
        predicted = []
        for row, ids in rows.values():
            rest = records.Record(record.paths, record.meta, record.trials[~record.trials["trial_id"].isin(ids)],
                                  record.epochs[~record.epochs["trial_id"].isin(ids)])
            predicted.append(Surrogate(rest, neighbours=k).predict(row)["val_acc"][-1])
        predicted = np.array(predicted)
        rank = np.corrcoef(np.argsort(np.argsort(predicted)), np.argsort(np.argsort(recorded)))[0, 1]
        lines.append(f"  K={k}: mean absolute error of the final val_acc {np.abs(predicted - recorded).mean():.4f}, "
                     f"Spearman {rank:.2f}")
    if surrogate.noise is not None:
        lines.append(f"  seed-to-seed: mean |difference| / sqrt(2) of the final val_acc over {len(surrogate.noise)} "
                     f"repeated configurations: {np.abs(surrogate.noise[:, val_acc, -1]).mean():.4f}")
    return lines


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", required=True,
                    help="record folder(s) written by python -m search.record, comma-separated")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per strategy (1..S)")
    ap.add_argument("--trials", type=int, default=64, help="trials per search")
    ap.add_argument("--concurrency", type=int, default=4,
                    help="trials at once in each search (as on one GPU at 4 per GPU)")
    ap.add_argument("--grace", type=int, default=1, help="ASHA's first rung, epochs")
    ap.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor")
    ap.add_argument("--epoch-sleep", type=float, default=0.05,
                    help="real seconds the record's median epoch sleeps (sets the time scale)")
    ap.add_argument("--parallel", type=int, default=5, help="searches at once (one driver process each)")
    ap.add_argument("--strategies", default=",".join(s.key for s in STRATEGIES))
    ap.add_argument("--png", default="benchmarks/search_efficiency.png")
    ap.add_argument("--unit", choices=("s", "min", "h"), default="min", help="device-time unit of the table and plot")
    ap.add_argument("--loo", default="",
                    help="also print the surrogate's leave-one-out error for these K, e.g. 1,3,5,8")
    args = ap.parse_args(argv)

    try:
        record = records.load(args.record)
        chosen = [s for key in args.strategies.split(",") for s in STRATEGIES if s.key == key]
        if len(chosen) != len(args.strategies.split(",")):
            raise ValueError(f"--strategies={args.strategies}: choose from {', '.join(s.key for s in STRATEGIES)}")
        if BASELINE not in {s.key for s in chosen}:
            raise ValueError(f"--strategies must include {BASELINE}: the others race to its final best")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = record.meta[0]
    print(f"record {','.join(record.paths)}: {len(record.trials)} curves of space {record.space} "
          f"at width {record.width}, "
          f"{record.max_epochs} epochs, {meta['subset'] or 'all'} training / {meta['val_size']} validation images, "
          f"on {record.device}")
    if args.loo:
        print("surrogate, leave one configuration out:")
        print("\n".join(surrogate_quality(record, [int(k) for k in args.loo.split(",")])))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    storage = tempfile.mkdtemp(prefix="search-efficiency-")
    options = Options(args.trials, args.concurrency, args.grace, args.eta, time_scale_for(record, args.epoch_sleep),
                      storage)
    start = time.monotonic()
    try:
        searches = run_all(record, options, chosen, list(range(1, args.seeds + 1)), args.parallel)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    wall = time.monotonic() - start
    # Ray's processes descend from this one and are reaped by the time Ray is shut down: with this
    # process's own, the CPU time the benchmark costs (its wall time depends on what else runs).
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    itself = resource.getrusage(resource.RUSAGE_SELF)
    cpu = used.ru_utime + used.ru_stime + itself.ru_utime + itself.ru_stime

    rows, target = summarize(searches, chosen)
    predicted = sum(e[4] == "replay:predicted" for x in searches for e in x.events)
    total = sum(len(x.events) for x in searches)
    print(f"{len(searches)} searches of {args.trials} trials (concurrency {args.concurrency}, ASHA grace {args.grace} "
          f"eta {args.eta}) in {wall:.0f} s ({cpu:.0f} CPU-seconds); {predicted / total:.0%} of the replayed epochs "
          "were predictions")
    print(table(rows, target, args.unit))
    title = (f"{record.space} (width {record.width}), {record.max_epochs} epochs, {meta['subset'] or 'all'} images, "
             f"{record.device}: {args.seeds} seeds x {args.trials} trials, concurrency {args.concurrency}")
    plot(searches, chosen, target, args.png, title, args.unit)
    print(f"anytime curves: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
