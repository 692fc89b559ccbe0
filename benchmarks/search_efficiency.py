"""Which search finds good models fastest, measured on recorded learning curves (search.replay.surrogate).

Each strategy runs S seeds over the same record as simulated searches (search.replay.simulate): the real
searchers and schedulers, a discrete-event clock instead of Ray Tune's loop and actors, so that a
search is the same at every run and takes about a second.

    tpe-asha      this project's search: HonestOptunaSearch + FairASHA with probes (search.strategy.asha)
    stock-asha    Ray's OptunaSearch (the same TPE sampler settings) + Ray's ASHAScheduler: the stock search
    random-asha   random configurations + FairASHA
    random-fifo   random configurations, every trial to max_epochs
    tpe-fifo      HonestOptunaSearch, every trial to max_epochs

With no refusals (none here), ours' TPE ranks a stopped trial as stock OptunaSearch tells it, by its
accuracy at the stop (search.strategy.searcher.TPEWithRefusals): ours and stock differ in the rungs
and in TPE's good set (ours: the best 5% of the trials; stock: Optuna's 10%).

"Best found" is the service's one notion of best (results.status.ranked): the last-epoch
validation accuracy of the best trial, completed trials before pruned ones, among the trials
ended so far; device-time is the sum of the recorded (or predicted) seconds of every epoch
reported so far. Per strategy, over the seeds: the interquartile mean (IQM: the mean of the middle
half) and a bootstrap 95% interval (2,000 resamples of the seeds, percentile) of

- the best found at the end, and at fractions of random-fifo's device-time;
- the time-to-target ratio: the device-time a search needs until the best it names reaches the
  target, random-fifo's final best (its IQM over seeds), divided by random-fifo's device-time
  (its IQM); "never" (infinite) for a seed that does not get there. The bootstrap resamples
  random-fifo's seeds too, so the target's and the yardstick's uncertainty are in the interval.

And ours against the stock search: the difference of the IQMs of the final best, and the
probability that a seed of ours reaches the target sooner than a seed of stock (ties count half),
each with its bootstrap interval. With --png, a figure of the anytime curves (IQM and 95% band).

    python benchmarks/search_efficiency.py --record benchmarks/records/full-cpu-12ep-2026-11-26
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import optuna  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from search.replay import records  # noqa: E402
from search.replay.simulate import RandomSearch, simulate  # noqa: E402
from search.replay.surrogate import CURVE_KEYS, Surrogate  # noqa: E402
from search.strategy.asha import make_scheduler  # noqa: E402
from search.strategy.searcher import HonestOptunaSearch, probes  # noqa: E402


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    searcher: str  # "honest", "stock" or "random"
    scheduler: str  # "fair" (search.strategy.asha), "asha" (Ray's ASHAScheduler) or "fifo"


STRATEGIES = (
    Strategy("tpe-asha", "TPE + ASHA (ours)", "honest", "fair"),
    Strategy("stock-asha", "stock OptunaSearch + ASHA", "stock", "asha"),
    Strategy("random-asha", "random + ASHA", "random", "fair"),
    Strategy("random-fifo", "random + FIFO", "random", "fifo"),
    Strategy("tpe-fifo", "TPE + FIFO", "honest", "fifo"),
)
BASELINE = "random-fifo"  # whose final best the others race to
OURS, STOCK = "tpe-asha", "stock-asha"
FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # of the baseline's device-time: where the best found is compared
RESAMPLES = 2000
UNLIMITED = 10**6  # trials of a search that a device budget ends


@dataclass(frozen=True)
class Options:
    trials: int
    concurrency: int
    grace: int
    eta: int
    budget: float | None = None  # device-seconds every strategy but the baseline may spend (None: `trials` each)


@dataclass(frozen=True)
class Search:
    strategy: str
    seed: int
    seconds: np.ndarray  # device-seconds spent when each trial ended
    best: np.ndarray  # the service's best val_acc then
    used: float  # device-seconds the whole search spent
    results: int
    trials: int  # trials that reported at least once
    predicted: int  # results that were predictions, not recorded curves
    wall: float  # seconds the simulation took

    @property
    def final(self) -> float:
        return float(self.best[-1])

    def time_to(self, target: float) -> float:
        reached = np.nonzero(self.best >= target)[0]
        return float(self.seconds[reached[0]]) if len(reached) else float("inf")

    def best_at(self, seconds: float) -> float:
        """The best the service names after `seconds` of device-time (0 before any trial has ended)."""
        at = np.searchsorted(self.seconds, seconds, side="right") - 1
        return float(self.best[at]) if at >= 0 else 0.0


def searcher(kind: str, record: records.Record, seed: int):
    if kind == "honest":
        fixed = {k: v for k, v in record.param_space().items() if k not in records.searched(record.params())}
        return HonestOptunaSearch(max_epochs=record.max_epochs, seed=seed, base=fixed)
    if kind == "stock":  # TPEWithRefusals' settings, except the good set: Optuna's default
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True))
    return RandomSearch(seed)


def scheduler(kind: str, max_epochs: int, o: Options, probe_trials: int = 0):
    if kind == "fair":
        return make_scheduler(max_epochs, o.grace, o.eta, probes=probe_trials)
    if kind == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=o.grace,
                             reduction_factor=o.eta)
    return FIFOScheduler()


_WORKER: dict = {}  # per process: the record and its surrogate, built once


def _setup(paths: tuple[str, ...]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    record = records.load(list(paths))
    _WORKER.update(record=record, surrogate=Surrogate(record), space=record.param_space())


def run_search(strategy: Strategy, seed: int, o: Options) -> Search:
    record, surrogate = _WORKER["record"], _WORKER["surrogate"]
    start = time.process_time()
    budgeted = o.budget is not None and strategy.key != BASELINE
    trials = UNLIMITED if budgeted else o.trials
    tpe_probes = probes(trials) if strategy.searcher == "honest" else 0  # as search.engine gives them
    sim = simulate(surrogate, searcher(strategy.searcher, record, seed),
                   scheduler(strategy.scheduler, record.max_epochs, o, tpe_probes), param_space=_WORKER["space"],
                   trials=trials, concurrency=o.concurrency, seed=seed,
                   device_budget=o.budget if budgeted else None)
    seconds, best = sim.anytime()
    return Search(strategy.key, seed, seconds, best, sim.device_seconds(), len(sim.results), len(sim.ended),
                  sum(r.source == "predicted" for r in sim.results), time.process_time() - start)


def _job(job: tuple[Strategy, int, Options]) -> Search:
    return run_search(*job)


def run_all(record: records.Record, o: Options, strategies: list[Strategy], seeds: list[int], jobs: int,
            same_budget: bool = True) -> list[Search]:
    """Every (strategy, seed) search; `jobs` processes. The result does not depend on `jobs`.

    same_budget: the baseline's searches first (o.trials trials each); then every other strategy
    may spend what the baseline spent (the IQM over its seeds), with as many trials as that pays
    for. Otherwise o.trials trials each."""
    base = [s for s in strategies if s.key == BASELINE]
    rest = [s for s in strategies if s.key != BASELINE] if same_budget else strategies
    first = base if same_budget else []
    pool = ProcessPoolExecutor(jobs, initializer=_setup, initargs=(record.paths,)) if jobs > 1 else None
    if pool is None:
        _setup(record.paths)

    def run(chosen: list[Strategy], options: Options) -> list[Search]:
        work = [(s, seed, options) for s in chosen for seed in seeds]
        if pool is None:
            return [_job(w) for w in work]
        return list(pool.map(_job, work, chunksize=max(1, len(work) // (8 * jobs))))

    try:
        done = run(first, o)
        if same_budget:
            o = Options(o.trials, o.concurrency, o.grace, o.eta, budget=iqm([x.used for x in done]))
        done += run(rest, o)
    finally:
        if pool is not None:
            pool.shutdown()
    order = {s.key: i for i, s in enumerate(strategies)}
    return sorted(done, key=lambda x: (order[x.strategy], x.seed))


# --- statistics over seeds ---
def iqm(values) -> float:
    """The mean of the middle half (25% cut from each end, as scipy.stats.trim_mean); inf stays inf."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(0.25 * len(x))
    middle = x[cut: len(x) - cut]
    return float(np.inf) if np.isinf(middle).any() else float(middle.mean())


def interval(samples) -> tuple[float, float]:
    """The bootstrap 95% percentile interval (no interpolation: inf-safe)."""
    return tuple(float(q) for q in np.quantile(np.asarray(samples), (0.025, 0.975), method="inverted_cdf"))


@dataclass(frozen=True)
class Stat:
    value: float
    low: float
    high: float

    def show(self, digits: int = 4) -> str:
        def f(v: float) -> str:
            return "never" if v == np.inf else f"{v:.{digits}f}"
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}]"


def summarize(searches: list[Search], strategies: list[Strategy], resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Every number the tables show (module docstring), with bootstrap intervals."""
    by = {s.key: [x for x in searches if x.strategy == s.key] for s in strategies}
    base = by[BASELINE]

    def yardstick(base_sample: list[Search]) -> tuple[float, float]:
        return iqm([x.final for x in base_sample]), iqm([x.used for x in base_sample])

    def measures(sample: list[Search], target: float, budget: float) -> dict[str, float]:
        out = {"final": iqm([x.final for x in sample]), "used": iqm([x.used for x in sample]),
               "ratio": iqm([x.time_to(target) / budget for x in sample])}
        for f in FRACTIONS:
            out[f"at {f}"] = iqm([x.best_at(f * budget) for x in sample])
        return out

    target, budget = yardstick(base)
    point = {k: measures(v, target, budget) for k, v in by.items()}
    rng = np.random.default_rng(seed)
    boot = {k: {m: [] for m in point[k]} for k in by}
    p_sooner, d_final = [], []
    for _ in range(resamples):
        pick = {k: [v[i] for i in rng.integers(len(v), size=len(v))] for k, v in by.items()}
        t, b = yardstick(pick[BASELINE])
        for k in by:
            for m, value in measures(pick[k], t, b).items():
                boot[k][m].append(value)
        if OURS in by and STOCK in by:
            p_sooner.append(_sooner(pick[OURS], pick[STOCK], t))
            d_final.append(iqm([x.final for x in pick[OURS]]) - iqm([x.final for x in pick[STOCK]]))
    stats = {k: {m: Stat(point[k][m], *interval(boot[k][m])) for m in point[k]} for k in by}
    for k, v in by.items():
        stats[k]["reached"] = sum(np.isfinite(x.time_to(target)) for x in v)
        stats[k]["seeds"] = len(v)
    verdict = None
    if OURS in by and STOCK in by:
        verdict = {"sooner": Stat(_sooner(by[OURS], by[STOCK], target), *interval(p_sooner)),
                   "final": Stat(point[OURS]["final"] - point[STOCK]["final"], *interval(d_final))}
    return {"target": target, "budget": budget, "stats": stats, "verdict": verdict}


def _sooner(ours: list[Search], stock: list[Search], target: float) -> float:
    """P(a seed of ours reaches the target with less device-time than a seed of stock), ties half."""
    a = np.array([x.time_to(target) for x in ours])[:, None]
    b = np.array([x.time_to(target) for x in stock])[None, :]
    return float(np.mean((a < b) + 0.5 * (a == b)))


def tables(summary: dict, strategies: list[Strategy], unit: str) -> str:
    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    target, budget = summary["target"], summary["budget"]
    lines = [
        f"| strategy | best val_acc at the end: IQM [95% CI] | device-{unit} used (IQM) | time to {target:.4f} / "
        f"random + FIFO's device-time: IQM [95% CI] | seeds that reach it |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in strategies:
        st = summary["stats"][s.key]
        lines.append(f"| {s.label} | {st['final'].show()} | {st['used'].value / scale:.1f} | {st['ratio'].show(2)} | "
                     f"{st['reached']}/{st['seeds']} |")
    lines += ["", f"Best val_acc found by a fraction of random + FIFO's device-time ({budget / scale:.1f} device-{unit}): "
              "IQM [95% CI]", "",
              "| strategy | " + " | ".join(f"{f:g}" for f in FRACTIONS) + " |",
              "| --- |" + " --- |" * len(FRACTIONS)]
    for s in strategies:
        st = summary["stats"][s.key]
        lines.append(f"| {s.label} | " + " | ".join(st[f"at {f}"].show() for f in FRACTIONS) + " |")
    v = summary["verdict"]
    if v:
        lines += ["", f"ours - stock, best val_acc at the end (IQM): {v['final'].value:+.4f} "
                      f"[{v['final'].low:+.4f}, {v['final'].high:+.4f}]; P(a seed of ours reaches {target:.4f} sooner "
                      f"than a seed of stock) = {v['sooner'].value:.2f} [{v['sooner'].low:.2f}, {v['sooner'].high:.2f}]"]
    return "\n".join(lines)


def anytime(searches: list[Search], grid: np.ndarray, resamples: int, seed: int = 0):
    """IQM and 95% interval of the best found at each grid device-time, over the seeds."""
    values = np.array([[x.best_at(g) for g in grid] for x in searches])  # [seed, grid]
    mid = np.sort(values, axis=0)[int(0.25 * len(values)): len(values) - int(0.25 * len(values))].mean(axis=0)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        sample = np.sort(values[rng.integers(len(values), size=len(values))], axis=0)
        boot.append(sample[int(0.25 * len(values)): len(values) - int(0.25 * len(values))].mean(axis=0))
    low, high = np.quantile(np.array(boot), (0.025, 0.975), axis=0, method="inverted_cdf")
    return mid, low, high


def plot(searches: list[Search], strategies: list[Strategy], summary: dict, path: str, title: str, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    first = float(np.median([x.seconds[0] for x in searches]))  # where half the searches have named a best
    grid = np.geomspace(first, max(x.used for x in searches), 200)
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in strategies:
        mine = [x for x in searches if x.strategy == s.key]
        mid, low, high = anytime(mine, grid, 500)
        style = "-" if s.key in (OURS, STOCK, BASELINE, "random-asha", "tpe-fifo") else ":"
        line, = ax.plot(grid / scale, mid, style, label=s.label)
        ax.fill_between(grid / scale, low, high, color=line.get_color(), alpha=0.12)
        ax.plot([summary["stats"][s.key]["used"].value / scale], [summary["stats"][s.key]["final"].value], "o",
                color=line.get_color())
    ax.axhline(summary["target"], color="grey", linestyle="--", linewidth=0.8, label="random + FIFO's final best (IQM)")
    ax.axvline(summary["budget"] / 4 / scale, color="grey", linestyle=":", linewidth=0.8,
               label="1/4 of random + FIFO's device-time")
    ax.set_xscale("log")
    ax.set_xlabel(f"simulated device-{unit} (sum of recorded epoch seconds); dot: IQM device-{unit} used, final best")
    ax.set_ylabel("best validation accuracy found (service's best, IQM, 95% band)")
    ax.set_title(title, fontsize=9)
    finals = [x.final for x in searches]
    ax.set_ylim(np.percentile(finals, 5) - 0.15, max(finals) + 0.01)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def surrogate_quality(record: records.Record, neighbours: list[int]) -> list[str]:
    """Leave one configuration out (all its seeds): predict its val_acc from the others."""
    surrogate = Surrogate(record)
    val_acc = CURVE_KEYS.index("val_acc")
    rows = {}  # configuration -> (one of its trial rows, its trial ids)
    for row in record.trials.to_dict("records"):
        rows.setdefault(surrogate.key(row), (row, []))[1].append(row["trial_id"])
    recorded = np.array([np.mean([r[val_acc] for r in surrogate.runs[key]], axis=0) for key in rows])  # [config, epoch]
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    lines = []
    for k in neighbours:
        predicted = []
        for row, ids in rows.values():
            rest = records.Record(record.paths, record.meta, record.trials[~record.trials["trial_id"].isin(ids)],
                                  record.epochs[~record.epochs["trial_id"].isin(ids)])
            predicted.append(Surrogate(rest, neighbours=k).predict(row)["val_acc"])
        predicted = np.array(predicted)
        parts = []
        for e in (1, 3, record.max_epochs):
            p, r = predicted[:, e - 1], recorded[:, e - 1]
            parts.append(f"epoch {e}: MAE {np.abs(p - r).mean():.4f}, Spearman {np.corrcoef(rank(p), rank(r))[0, 1]:.2f}")
        lines.append(f"  K={k}: " + "; ".join(parts))
    if surrogate.noise is not None:
        lines.append(f"  seed-to-seed: mean |difference| / sqrt(2) of the final val_acc over {len(surrogate.noise)} "
                     f"repeated configurations: {np.abs(surrogate.noise[:, val_acc, -1]).mean():.4f}")
    return lines


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", required=True,
                    help="record folder(s) written by python -m search.replay.record, comma-separated")
    ap.add_argument("--seeds", type=int, default=20, help="seeds per strategy (1..S)")
    ap.add_argument("--trials", type=int, default=64,
                    help="trials of random + FIFO; the others may spend its device-time (IQM over seeds)")
    ap.add_argument("--same-trials", action="store_true",
                    help="every strategy runs --trials trials instead, whatever they cost")
    ap.add_argument("--concurrency", type=int, default=4,
                    help="trials at once in each search (as on one GPU at 4 per GPU)")
    ap.add_argument("--grace", type=int, default=1, help="ASHA's first rung, epochs")
    ap.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor")
    ap.add_argument("--jobs", type=int, default=2, help="processes that simulate searches (results do not depend on it)")
    ap.add_argument("--strategies", default=",".join(s.key for s in STRATEGIES))
    ap.add_argument("--png", help="draw the anytime curves there (the committed figures: docs/replay.md)")
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
        if args.seeds < 1:
            raise ValueError(f"--seeds={args.seeds}: at least 1")
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

    load_before = os.getloadavg()[0]
    start = time.monotonic()
    options = Options(args.trials, args.concurrency, args.grace, args.eta)
    searches = run_all(record, options, chosen, list(range(1, args.seeds + 1)), args.jobs,
                       same_budget=not args.same_trials)
    summary = summarize(searches, chosen)
    wall = time.monotonic() - start
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    itself = resource.getrusage(resource.RUSAGE_SELF)
    cpu = used.ru_utime + used.ru_stime + itself.ru_utime + itself.ru_stime

    predicted = sum(x.predicted for x in searches) / sum(x.results for x in searches)
    trials = (f"{args.trials} trials each" if args.same_trials else
              f"{args.trials} trials of random + FIFO, the others as many as its device-time pays for "
              f"(IQM {iqm([x.trials for x in searches if x.strategy == 'tpe-asha'] or [0]):.0f} trials for ours)")
    print(f"{len(searches)} simulated searches ({len(chosen)} strategies x {args.seeds} seeds), {trials} "
          f"(concurrency {args.concurrency}, ASHA grace {args.grace} eta {args.eta}) in {wall:.0f} s, {cpu:.0f} "
          f"CPU-seconds, {args.jobs} processes, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"{predicted:.0%} of the replayed epochs were predictions")
    print(tables(summary, chosen, args.unit))
    title = (f"{record.space} (width {record.width}), {record.max_epochs} epochs, {meta['subset'] or 'all'} images, "
             f"{record.device}:\n{args.seeds} seeds, concurrency {args.concurrency}, "
             + (f"{args.trials} trials each" if args.same_trials else
                f"random + FIFO's device-time ({args.trials} trials) for each"))
    if args.png:
        plot(searches, chosen, summary, args.png, title, args.unit)
        print(f"anytime curves: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
