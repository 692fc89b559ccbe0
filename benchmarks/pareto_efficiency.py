"""Does MO-ASHA find a better accuracy-versus-size front than no early stopping, for the same device-time?

Simulated searches (search.replay.simulate) over recorded learning curves, objective=val_acc,params,
S seeds per strategy:

    mo-asha         HonestOptunaSearch on two objectives (Optuna's multi-objective TPE) + FairASHA's MO-ASHA
    mo-fifo         the same searcher, every trial to max_epochs

mo-fifo runs --trials trials; mo-asha may spend the same device-time (the IQM of mo-fifo's over
its seeds), as many trials as that pays for, and ends as the service's device budget ends a
search. (Stock OptunaSearch on the same objectives with MO-ASHA is mo-asha trial for trial: TPE
sees a stopped trial as stock OptunaSearch tells it, search.strategy.searcher.TPEWithRefusals.)

The measure is the hypervolume of the front the service would show when the search stopped there
(results.pareto.front: the completed trials no other completed trial beats on both objectives),
in the plane of validation accuracy and log10 of the parameters, beyond the reference point
REFERENCE: accuracy 0.10 (chance on ten classes) and 100,000 parameters (above every network of
the committed records: the largest has 45,202). Its unit: accuracy x decades of parameters; a
front of one network at 0.85 with 1,000 parameters has (0.85 - 0.10) x (5 - 3) = 1.5. Device-time:
the sum of the recorded (or predicted) seconds of every epoch reported so far. Per strategy, over
the seeds: the IQM (mean of the middle half) and a bootstrap 95% interval (2,000 resamples of the
seeds, percentile) of the final hypervolume and of the hypervolume at fractions of mo-fifo's
device-time; the time-to-target ratio (device-time until the hypervolume reaches mo-fifo's final
IQM, over mo-fifo's device-time; "never" when a seed does not get there); MO-ASHA minus FIFO (final
hypervolumes' IQMs) and the probability that a MO-ASHA seed reaches the target sooner than a FIFO
seed (ties half), with intervals. With --png, a figure of the anytime curves.

    python benchmarks/pareto_efficiency.py --record benchmarks/records/full-cpu-12ep-2026-11-26
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import optuna  # noqa: E402
from ray.tune.schedulers import FIFOScheduler  # noqa: E402

from results import pareto  # noqa: E402
from results.status import COMPLETED  # noqa: E402
from search.replay import records  # noqa: E402
from search.replay.simulate import Simulation, simulate  # noqa: E402
from search.replay.surrogate import Surrogate  # noqa: E402
from search.strategy.asha import make_scheduler  # noqa: E402
from search.strategy.searcher import HonestOptunaSearch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_efficiency import FRACTIONS, RESAMPLES, UNLIMITED, Options, Stat, interval, iqm  # noqa: E402

OBJECTIVES = ("val_acc", "params")
STRATEGIES = {"mo-asha": "TPE (2 objectives) + MO-ASHA", "mo-fifo": "TPE (2 objectives) + FIFO"}
ASHA, BASELINE = "mo-asha", "mo-fifo"
# search_efficiency's Options, FRACTIONS (of mo-fifo's device-time here), RESAMPLES and UNLIMITED.


@dataclass(frozen=True)
class Search:
    strategy: str
    seed: int
    seconds: np.ndarray  # device-seconds spent when each trial ended
    volume: np.ndarray  # the hypervolume of the front then
    used: float  # device-seconds the whole search spent
    trials: int  # trials that reported at least once
    completed: int
    front: int  # trials on the final front
    wall: float  # seconds the simulation took

    @property
    def final(self) -> float:
        return float(self.volume[-1]) if len(self.volume) else 0.0

    def time_to(self, target: float) -> float:
        reached = np.nonzero(self.volume >= target)[0]
        return float(self.seconds[reached[0]]) if len(reached) else float("inf")

    def at(self, seconds: float) -> float:
        i = np.searchsorted(self.seconds, seconds, side="right") - 1
        return float(self.volume[i]) if i >= 0 else 0.0


def point(accuracy: float, params: int) -> np.ndarray:
    """A trial in the hypervolume's plane: gains (larger is better) of accuracy and log10 parameters."""
    return np.array([accuracy, -np.log10(params)])


REFERENCE = point(0.10, 100_000)  # chance on ten classes; more parameters than any network of the records


def anytime(sim: Simulation) -> tuple[np.ndarray, np.ndarray, int]:
    """(device-seconds, hypervolume of the completed trials' front) each time a trial ends; the final front's size."""
    spent = np.cumsum([r.seconds for r in sim.results])
    times = np.array([r.time for r in sim.results])
    seconds, volume, done = [], [], []
    for trial in sim.ended:
        if trial.status == COMPLETED:
            done.append(point(trial.last_val_acc, trial.params))
        seconds.append(spent[np.searchsorted(times, trial.time, side="right") - 1])
        volume.append(pareto.hypervolume(np.array(done), REFERENCE) if done else 0.0)
    on_front = int((pareto.ranks(np.array(done)) == 0).sum()) if done else 0
    return np.array(seconds), np.array(volume), on_front


_WORKER: dict = {}


def _setup(paths: tuple[str, ...]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    record = records.load(list(paths))
    fixed = {k: v for k, v in record.param_space().items() if k not in records.searched(record.params())}
    _WORKER.update(record=record, surrogate=Surrogate(record), space=record.param_space(), fixed=fixed)


def run_search(strategy: str, seed: int, o: Options) -> Search:
    record = _WORKER["record"]
    start = time.process_time()
    searcher = HonestOptunaSearch(max_epochs=record.max_epochs, seed=seed, base=_WORKER["fixed"], objectives=OBJECTIVES)
    scheduler = FIFOScheduler() if strategy == BASELINE else make_scheduler(record.max_epochs, o.grace, o.eta, OBJECTIVES)
    budgeted = o.budget is not None and strategy != BASELINE
    sim = simulate(_WORKER["surrogate"], searcher, scheduler, param_space=_WORKER["space"],
                   trials=UNLIMITED if budgeted else o.trials, concurrency=o.concurrency, seed=seed,
                   device_budget=o.budget if budgeted else None)
    seconds, volume, front = anytime(sim)
    completed = sum(e.status == COMPLETED for e in sim.ended)
    return Search(strategy, seed, seconds, volume, sim.device_seconds(), len(sim.ended), completed, front,
                  time.process_time() - start)


def _job(job: tuple[str, int, Options]) -> Search:
    return run_search(*job)


def run_all(record: records.Record, o: Options, seeds: list[int], jobs: int) -> list[Search]:
    """mo-fifo's searches first, then the others on their device-time (IQM); `jobs` processes."""
    pool = ProcessPoolExecutor(jobs, initializer=_setup, initargs=(record.paths,)) if jobs > 1 else None
    if pool is None:
        _setup(record.paths)

    def run(strategy: str, options: Options) -> list[Search]:
        work = [(strategy, seed, options) for seed in seeds]
        return [_job(w) for w in work] if pool is None else list(pool.map(_job, work))

    try:
        base = run(BASELINE, o)
        budget = iqm([x.used for x in base])
        budgeted = Options(o.trials, o.concurrency, o.grace, o.eta, budget=budget)
        return run(ASHA, budgeted) + base
    finally:
        if pool is not None:
            pool.shutdown()


def summarize(searches: list[Search], resamples: int = RESAMPLES, seed: int = 0) -> dict:
    by = {k: [x for x in searches if x.strategy == k] for k in STRATEGIES}

    def yardstick(base: list[Search]) -> tuple[float, float]:
        return iqm([x.final for x in base]), iqm([x.used for x in base])

    def measures(sample: list[Search], target: float, budget: float) -> dict[str, float]:
        out = {"final": iqm([x.final for x in sample]), "ratio": iqm([x.time_to(target) / budget for x in sample])}
        out.update({f"at {f}": iqm([x.at(f * budget) for x in sample]) for f in FRACTIONS})
        return out

    target, budget = yardstick(by[BASELINE])
    point_estimates = {k: measures(v, target, budget) for k, v in by.items()}
    rng = np.random.default_rng(seed)
    boot = {k: {m: [] for m in point_estimates[k]} for k in by}
    sooner, difference = [], []
    for _ in range(resamples):
        pick = {k: [v[i] for i in rng.integers(len(v), size=len(v))] for k, v in by.items()}
        t, b = yardstick(pick[BASELINE])
        for k in by:
            for m, value in measures(pick[k], t, b).items():
                boot[k][m].append(value)
        sooner.append(_sooner(pick[ASHA], pick[BASELINE], t))
        difference.append(iqm([x.final for x in pick[ASHA]]) - iqm([x.final for x in pick[BASELINE]]))
    stats = {k: {m: Stat(point_estimates[k][m], *interval(boot[k][m])) for m in point_estimates[k]} for k in by}
    verdict = {"difference": Stat(point_estimates[ASHA]["final"] - point_estimates[BASELINE]["final"], *interval(difference)),
               "sooner": Stat(_sooner(by[ASHA], by[BASELINE], target), *interval(sooner))}
    return {"target": target, "budget": budget, "stats": stats, "verdict": verdict, "by": by}


def _sooner(a: list[Search], b: list[Search], target: float) -> float:
    x = np.array([s.time_to(target) for s in a])[:, None]
    y = np.array([s.time_to(target) for s in b])[None, :]
    return float(np.mean((x < y) + 0.5 * (x == y)))


def tables(summary: dict) -> str:
    target, budget = summary["target"], summary["budget"]
    lines = [f"| strategy | hypervolume at the end: IQM [95% CI] | trials (IQM) | completed (IQM) | on the front (IQM) "
             f"| time to {target:.3f} / FIFO's device-time: IQM [95% CI] |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, label in STRATEGIES.items():
        st, mine = summary["stats"][key], summary["by"][key]
        lines.append(f"| {label} | {st['final'].show(3)} | {iqm([x.trials for x in mine]):.0f} | "
                     f"{iqm([x.completed for x in mine]):.0f} | {iqm([x.front for x in mine]):.1f} | {st['ratio'].show(2)} |")
    lines += ["", f"Hypervolume by a fraction of FIFO's device-time ({budget / 60:.1f} device-min): IQM [95% CI]", "",
              "| strategy | " + " | ".join(f"{f:g}" for f in FRACTIONS) + " |", "| --- |" + " --- |" * len(FRACTIONS)]
    for key, label in STRATEGIES.items():
        lines.append(f"| {label} | " + " | ".join(summary["stats"][key][f"at {f}"].show(3) for f in FRACTIONS) + " |")
    v = summary["verdict"]
    lines += ["", f"MO-ASHA - FIFO, final hypervolume (IQM): {v['difference'].value:+.3f} [{v['difference'].low:+.3f}, "
                  f"{v['difference'].high:+.3f}]; P(a MO-ASHA seed reaches {target:.3f} sooner than a FIFO seed) = "
                  f"{v['sooner'].value:.2f} [{v['sooner'].low:.2f}, {v['sooner'].high:.2f}]"]
    return "\n".join(lines)


def plot(summary: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    searches = [x for v in summary["by"].values() for x in v]
    grid = np.linspace(0, max(x.used for x in searches), 200)
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in STRATEGIES.items():
        values = np.array([[x.at(g) for g in grid] for x in summary["by"][key]])
        cut = int(0.25 * len(values))
        middle = lambda v: np.sort(v, axis=0)[cut: len(v) - cut].mean(axis=0)  # noqa: E731
        rng = np.random.default_rng(0)
        boot = np.array([middle(values[rng.integers(len(values), size=len(values))]) for _ in range(500)])
        low, high = np.quantile(boot, (0.025, 0.975), axis=0, method="inverted_cdf")
        line, = ax.plot(grid / 60, middle(values), label=label)
        ax.fill_between(grid / 60, low, high, color=line.get_color(), alpha=0.15)
    ax.axhline(summary["target"], color="grey", linestyle="--", linewidth=0.8, label="FIFO's final hypervolume (IQM)")
    ax.set(xlabel="simulated device-minutes (sum of recorded epoch seconds)",
           ylabel="hypervolume of the front (accuracy x decades of parameters)", title=title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", required=True, help="record folder(s) written by python -m search.replay.record")
    ap.add_argument("--seeds", type=int, default=20, help="seeds per strategy (1..S)")
    ap.add_argument("--trials", type=int, default=64, help="trials of mo-fifo; mo-asha may spend its device-time")
    ap.add_argument("--concurrency", type=int, default=4, help="trials at once")
    ap.add_argument("--grace", type=int, default=1, help="MO-ASHA's first rung, epochs")
    ap.add_argument("--eta", type=int, default=3, help="MO-ASHA's reduction factor")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    ap.add_argument("--png", help="draw the anytime curves there (the committed figures: docs/replay.md)")
    args = ap.parse_args(argv)
    try:
        record = records.load(args.record)
        if args.seeds < 1:
            raise ValueError(f"--seeds={args.seeds}: at least 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.monotonic()
    o = Options(args.trials, args.concurrency, args.grace, args.eta)
    searches = run_all(record, o, list(range(1, args.seeds + 1)), args.jobs)
    summary = summarize(searches)
    print(f"record {','.join(record.paths)}: {len(record.trials)} curves, {record.max_epochs} epochs; "
          f"{len(searches)} simulated searches ({args.seeds} seeds each), {args.trials} trials of FIFO, MO-ASHA on its "
          f"device-time; concurrency {args.concurrency}, grace {args.grace}, eta {args.eta}; "
          f"{time.monotonic() - start:.0f} s, {args.jobs} processes")
    print(tables(summary))
    title = (f"{record.space}, {record.max_epochs} epochs, {record.device}: val_acc and params, {args.seeds} seeds, "
             f"FIFO's device-time ({args.trials} trials) each")
    if args.png:
        plot(summary, args.png, title)
        print(f"anytime curves: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
