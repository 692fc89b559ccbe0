"""What orchestration costs a search, without a GPU: the real engine beside bare Ray Tune, on trials that sleep.

Both runs get the same trials: each sleeps `--epoch-seconds` per epoch instead of training. The
engine's run is `search.run`'s own (search.engine.create_tuner: the same Tuner, TPE, FairASHA,
callbacks, checkpoints and reports) with a trainer that sleeps and saves a state of `--state-mb`
through search.trainable.train_trial's loop, as a real trial does. Bare Ray Tune then runs, in
the same process and on the same slots, one trial per engine trial for exactly as many epochs as
that trial ran, reporting the metric and nothing else: no searcher, scheduler, callbacks or
checkpoints. What separates the two is what the engine adds.

Every trial logs, on its worker, when it started and when each epoch's sleep began and ended;
the driver times Tuner.fit() and, for the engine, each of its parts. Printed per run:

  efficiency   slept seconds / (slots x Tuner.fit wall): 1.0 means no slot ever sat idle
  steady       slept seconds / the slots' seconds from their first trial to the end: the start left out
  start        from fit() until every slot has begun its first trial (actors start once each)
  born         from fit() until the last slot's worker process was born
  to_first     median, from a worker process's birth to its first trial's start
  epoch gap    median, from one epoch's sleep to the next within a trial: checkpoint and report
  trial gap    median, from a trial's last sleep to the next trial's start on the same actor
  tail         from the last sleep's end until fit() returns
and, for the engine, the driver's seconds in the searcher (suggest, results, snapshots), the
scheduler, each callback and Tune's experiment snapshots; and the worker's seconds in checkpoints.

    python benchmarks/orchestration.py [--trials 64] [--slots 8] [--epoch-seconds 1] [--state-mb 3]
                                       [--max-epochs 4] [--grace 1] [--eta 2] [--space full] [--repeat 1]

Defaults: 64 trials of about 2 epochs (ASHA with rungs at 1 and 2 epochs of 4), 8 slots. Run it on
a quiet machine: the slots share its cores with the driver and Ray. On 2 cores the start alone
varies by about 2 s between runs of the same code: `--repeat 3` runs the three in turn three times
and prints the medians, and the engine's ratios to bare Tune round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


# --- the trials: they sleep and say when ---------------------------------------------------------


def log_event(folder: str, **event) -> None:
    """One line per event in a file per worker process: wall-clock seconds (every process is on this machine)."""
    with open(Path(folder, f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "t": time.time(), "born": process_start(), **event}) + "\n")


def process_start() -> float:
    """When this process started, wall-clock seconds (Linux: /proc; elsewhere: now)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return time.time()


def made_up_accuracy(config: dict, epoch: int) -> float:
    """A deterministic curve whose level is a hash of the config: TPE and ASHA see differences."""
    level = 0.5 + 0.4 * (zlib.crc32(json.dumps(config, sort_keys=True, default=str).encode()) % 10_000) / 10_000
    return level * (1 - 0.5 ** epoch)


@dataclass(frozen=True)
class SleepingTrainers:
    """make_trainer for search.trainable.train_trial: builds a SleepingTrainer."""

    epoch_seconds: float
    state_bytes: int
    events: str  # the folder of the event logs

    def __call__(self, cfg, split, device=None):
        return SleepingTrainer(cfg, self)


class SleepingTrainer:
    """Stands in for model.trainer.Trainer: same interface as train_trial uses it, sleeps per epoch.
    Its module's imports (model.trainer, torch) are those of a real trial, so its process starts as
    a real trial's does, less CUDA."""

    def __init__(self, cfg, how: SleepingTrainers) -> None:
        import torch

        log_event(how.events, kind="start")
        self.cfg, self.how, self.epoch, self.params = cfg, how, 0, 100_000
        self.config = cfg.to_flat()
        # Incompressible, as trained weights are: torch.save writes it as it is. Made once a process.
        self.blob = _blob(how.state_bytes, torch)

    def run_epoch(self):
        from model.trainer import EpochMetrics

        start = time.time()
        time.sleep(self.how.epoch_seconds)
        end = time.time()
        log_event(self.how.events, kind="epoch", start=start, end=end)
        self.epoch += 1
        acc = made_up_accuracy(self.config, self.epoch)
        return EpochMetrics(epoch=self.epoch, train_loss=1 - acc, train_acc=acc, val_loss=1 - acc, val_acc=acc,
                            lr=self.cfg.lr, seconds=end - start, images_per_second=0.0)

    def state_dict(self) -> dict:
        return {"config": self.config, "epoch": self.epoch, "blob": self.blob}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.blob = state["epoch"], state["blob"]


_BLOBS: dict = {}


def _blob(size: int, torch):
    if size not in _BLOBS:
        _BLOBS[size] = torch.randint(0, 255, (size,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return _BLOBS[size]


def bare_trial(config: dict, make: SleepingTrainers) -> None:
    """Bare Tune's trial: as many epochs as its engine twin ran, each reported, nothing checkpointed.
    payload: built as the engine's trials are (a SleepingTrainer: model.trainer and torch imported);
    else it only sleeps, importing nothing."""
    from dataclasses import asdict, replace

    from ray import tune

    if config["payload"]:
        from model.config import preset

        trainer = make(replace(preset("seed"), epochs=config["epochs"]), None)
        while trainer.epoch < config["epochs"]:
            tune.report(asdict(trainer.run_epoch()))
        return
    log_event(make.events, kind="start")
    for epoch in range(1, config["epochs"] + 1):
        start = time.time()
        time.sleep(make.epoch_seconds)
        end = time.time()
        log_event(make.events, kind="epoch", start=start, end=end)
        tune.report({"val_acc": 0.5 * (1 - 0.5 ** epoch)})


# --- the driver's clock ---------------------------------------------------------------------------


class Stopwatch:
    """Seconds spent in chosen methods, by label; `timed` wraps a class's methods while it is open."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def timed(self, cls: type, names: list[str], label: str):
        originals = {name: cls.__dict__[name] for name in names if name in cls.__dict__}

        def wrap(name, fn):
            @wraps(fn)
            def timed_fn(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[f"{label}.{name}"] += time.perf_counter() - start
                    self.calls[f"{label}.{name}"] += 1
            return timed_fn

        for name, fn in originals.items():
            setattr(cls, name, wrap(name, fn))
        try:
            yield
        finally:
            for name, fn in originals.items():
                setattr(cls, name, fn)


@contextmanager
def engine_clock(watch: Stopwatch):
    """The engine's parts, timed where the driver calls them (class attributes: nothing pickled changes)."""
    from contextlib import ExitStack

    from search.strategy.asha import FairASHA, RungKeeper
    from internals import tune_controller_class
    from search.progress import Progress
    from search.strategy.searcher import HonestOptunaSearch

    events = ["setup", "on_step_begin", "on_step_end", "on_trial_start", "on_trial_result", "on_trial_complete",
              "on_trial_error", "on_checkpoint", "on_experiment_end", "get_state"]
    with ExitStack() as stack:
        stack.enter_context(watch.timed(HonestOptunaSearch, ["suggest", "on_trial_result", "on_trial_complete", "save",
                                                             "set_search_properties"], "searcher"))
        stack.enter_context(watch.timed(FairASHA, ["on_trial_add", "on_trial_result", "on_trial_complete"], "scheduler"))
        stack.enter_context(watch.timed(RungKeeper, events, "callback RungKeeper"))
        stack.enter_context(watch.timed(Progress, events, "callback Progress"))
        stack.enter_context(watch.timed(tune_controller_class(), ["checkpoint", "save_to_dir"], "tune snapshot"))
        yield


# --- the two runs ---------------------------------------------------------------------------------


def run_engine(args, storage: str, make: SleepingTrainers, watch: Stopwatch) -> tuple[float, float]:
    """(fit start, fit end) of search.engine's Tuner over sleeping trials; `watch` times its parts."""
    from model import data as fmnist
    from search import engine
    from search.run import parse

    cpus = os.cpu_count() or 1
    settings = parse([
        f"space={args.space}", f"trials={args.trials}", f"max_epochs={args.max_epochs}", f"grace={args.grace}",
        f"eta={args.eta}", f"concurrency={args.slots + args.staged}", f"cpus_per_trial={cpus / args.slots:g}", "gpus_per_trial=0",
        "val_size=1000", "subset=3000", f"storage={storage}", "name=engine",
        *([f"checkpoint_every={args.checkpoint_every:g}"] if args.checkpoint_every is not None else []),
    ])
    images, labels = fmnist.load("train")
    split = fmnist.split(images, labels, settings.val_size, settings.subset, seed=fmnist.SPLIT_SEED)
    engine.quiet()
    from search.runtime.ray_session import ray_session

    with ray_session(num_cpus=cpus):
        tuner = engine.create_tuner(settings, split, make_trainer=make)
        with engine_clock(watch):
            start = time.time()
            tuner.fit()
            end = time.time()
    return start, end


def run_bare(args, storage: str, make: SleepingTrainers, epochs: list[int], payload: bool) -> tuple[float, float]:
    """(fit start, fit end) of bare Ray Tune over one sleeping trial per entry of `epochs`."""
    from ray import tune

    from search.runtime.ray_session import ray_session

    cpus = os.cpu_count() or 1
    with ray_session(num_cpus=cpus):
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(bare_trial, make=make), {"cpu": cpus / args.slots}),
            param_space={"i": tune.grid_search(list(range(len(epochs)))), "payload": payload,
                         "epochs": tune.sample_from(lambda spec: epochs[spec.config.i])},
            tune_config=tune.TuneConfig(max_concurrent_trials=args.slots, reuse_actors=True),
            run_config=tune.RunConfig(name=f"bare-{payload}", storage_path=storage, verbose=0),
        )
        start = time.time()
        tuner.fit()
        end = time.time()
    return start, end


# --- what the logs say ------------------------------------------------------------------------------


@dataclass
class Trial:
    pid: int
    born: float  # when its worker process started
    start: float
    sleeps: list[tuple[float, float]]


def read_trials(events: str) -> list[Trial]:
    trials: list[Trial] = []
    for path in sorted(Path(events).glob("*.jsonl")):
        current: Trial | None = None
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["kind"] == "start":
                current = Trial(event["pid"], event["born"], event["t"], [])
                trials.append(current)
            elif current is not None:
                current.sleeps.append((event["start"], event["end"]))
    return sorted(trials, key=lambda t: t.start)


def summary(trials: list[Trial], start: float, end: float, slots: int) -> dict:
    wall = end - start
    slept = sum(e - s for t in trials for s, e in t.sleeps)
    first = {t.pid: t for t in reversed(trials)}  # each actor's first trial
    firsts = sorted(t.start for t in first.values())
    epoch_gaps = [b[0] - a[1] for t in trials for a, b in zip(t.sleeps, t.sleeps[1:])]
    by_pid: dict[int, list[Trial]] = defaultdict(list)
    for t in trials:
        by_pid[t.pid].append(t)
    trial_gaps = [b.start - a.sleeps[-1][1] for ts in by_pid.values() for a, b in zip(ts, ts[1:]) if a.sleeps]
    last = max((e for t in trials for _, e in t.sleeps), default=end)
    return {
        "trials": len(trials), "epochs": sum(len(t.sleeps) for t in trials), "actors": len(by_pid),
        "wall": wall, "slept": slept, "efficiency": slept / (slots * wall),
        # The same once each slot has started: its own idle time only (gaps, tail), not the processes' start.
        "steady": slept / sum(end - t.start for t in list(first.values())[:slots]) if first else float("nan"),
        "start": (firsts[slots - 1] if len(firsts) >= slots else firsts[-1]) - start,
        "epoch_gap": statistics.median(epoch_gaps) if epoch_gaps else float("nan"),
        "trial_gap": statistics.median(trial_gaps) if trial_gaps else float("nan"),
        "tail": end - last,
        # The start, taken apart: when the slots' worker processes were born, and how long each took
        # from its birth to its first trial (Python, Ray and the trainable's imports, the trial's set-up).
        "born": sorted(t.born for t in first.values())[min(slots, len(first)) - 1] - start,
        "to_first": statistics.median(t.start - t.born for t in first.values()),
    }


def epochs_per_trial(trials: list[Trial]) -> list[int]:
    """Epochs each engine trial slept, in start order (a resumed epoch would count twice: none here)."""
    return [len(t.sleeps) for t in trials]


ROWS = (("efficiency", "{:.3f}"), ("steady", "{:.3f}"), ("wall", "{:.1f} s"), ("slept", "{:.1f} s"), ("start", "{:.2f} s"),
        ("born", "{:.2f} s"), ("to_first", "{:.2f} s"),
        ("epoch_gap", "{:.3f} s"), ("trial_gap", "{:.3f} s"), ("tail", "{:.2f} s"), ("trials", "{:g}"),
        ("epochs", "{:g}"), ("actors", "{:g}"))


RUNS = ("engine", "bare Tune", "bare, sleep")  # the last: trials that import nothing, as the issue first measured


def one_round(args, watch: Stopwatch) -> dict[str, dict]:
    """The engine, then bare Tune over the same trials (with the engine's imports, then importing
    nothing), each from a fresh Ray: {run: its figures}."""
    figures = {}
    with tempfile.TemporaryDirectory(prefix="orchestration-") as tmp:
        makes = {run: SleepingTrainers(args.epoch_seconds, int(args.state_mb * 2**20), str(Path(tmp, f"events-{i}")))
                 for i, run in enumerate(RUNS)}
        for make in makes.values():
            Path(make.events).mkdir()
        storage = str(Path(tmp, "runs"))
        start, end = run_engine(args, storage, makes["engine"], watch)
        engine_trials = read_trials(makes["engine"].events)
        figures["engine"] = summary(engine_trials, start, end, args.slots)
        for run, payload in (("bare Tune", True), ("bare, sleep", False)):
            start, end = run_bare(args, storage, makes[run], epochs_per_trial(engine_trials), payload)
            figures[run] = summary(read_trials(makes[run].events), start, end, args.slots)
    return figures


def _spread(values: list[float], fmt: str) -> str:
    """One value as it is; several as their median and range: '0.94 (0.92 to 1.03)'."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--slots", type=int, default=8, help="trials at once (each gets cores / slots CPUs)")
    ap.add_argument("--epoch-seconds", type=float, default=1.0)
    ap.add_argument("--state-mb", type=float, default=3.0, help="checkpointed state per trial, MiB")
    ap.add_argument("--checkpoint-every", type=float, default=None, help="search.run's key (default: its default)")
    ap.add_argument("--staged", type=int, default=0,
                    help="trials the engine suggests beyond the slots (concurrency = slots + staged), as "
                         "budget=standard stages four a GPU: a slot that frees starts one without waiting for TPE")
    ap.add_argument("--max-epochs", type=int, default=4)
    ap.add_argument("--grace", type=int, default=1)
    ap.add_argument("--eta", type=int, default=2)
    ap.add_argument("--space", default="full")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of the three runs, interleaved: medians, and each round's engine / bare ratios")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)

    each: dict[str, list[dict]] = {run: [] for run in RUNS}  # every repetition's figures, in order
    watch = Stopwatch()  # the engine's driver, over every repetition
    for _ in range(args.repeat):
        for run, figures in one_round(args, watch).items():
            each[run].append(figures)
    figures = {run: {key: statistics.median(f[key] for f in each[run]) for key in each[run][0]} for run in RUNS}

    rounds = f" (medians of {args.repeat} interleaved rounds)" if args.repeat > 1 else ""
    print(f"{args.trials} trials sleeping {args.epoch_seconds:g} s an epoch (ASHA {args.grace}/{args.eta} up to "
          f"{args.max_epochs}), {args.slots} slots, {os.cpu_count()} CPUs, a {args.state_mb:g} MiB state{rounds}")
    print(f"  {'':<11}" + "".join(f" {run:>12}" for run in RUNS))
    for key, fmt in ROWS:
        print(f"  {key:<11}" + "".join(f" {fmt.format(figures[run][key]):>12}" for run in RUNS))
    ratios = {}
    for run in RUNS[1:]:
        pairs = list(zip(each["engine"], each[run]))  # the engine and `run` of one round, side by side
        ratios[run] = [engine["efficiency"] / other["efficiency"] for engine, other in pairs]
        starts = [engine["start"] - other["start"] for engine, other in pairs]
        steady = [engine["steady"] / other["steady"] for engine, other in pairs]
        gaps = [engine["trial_gap"] - other["trial_gap"] for engine, other in pairs]
        print(f"engine / {run}: efficiency {_spread(ratios[run], '{:.2f}')} (steady {_spread(steady, '{:.2f}')}), "
              f"start {_spread(starts, '{:+.2f}')} s, trial gap {_spread(gaps, '{:+.3f}')} s")
    print("the engine's driver, by part (seconds a round, calls a round):")
    for label, seconds in sorted(watch.seconds.items(), key=lambda kv: -kv[1]):
        if seconds / args.repeat >= 0.005:
            print(f"  {label:<40} {seconds / args.repeat:7.2f} {watch.calls[label] / args.repeat:6.0f}")
    result = {**figures, "rounds": each, "driver_seconds": {k: v / args.repeat for k, v in watch.seconds.items()},
              "ratio": {run: statistics.median(r) for run, r in ratios.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
