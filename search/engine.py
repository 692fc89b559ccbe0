"""The Tune side of a search: Tuner (new or restored), TPE, ASHA, the live view, the report.

`run_search` holds the experiment's lock from the moment Ray is up (nothing is written before)
until the report is printed, and turns the ways a search ends into exit codes: search.report's
0 / 1 / 130, 2 when the experiment is taken or the cluster cannot be joined, and 130 with the
resume command for a Ctrl-C at any moment, a second one included (Tune stops cleanly on the first
and lets the second through as KeyboardInterrupt); 143 likewise for SIGTERM, which takes Ctrl-C's
path (model.overrides.command); 1 with one line and the resume command when the
storage fails under the search (a full disk: an OSError).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
from datetime import datetime, timezone

import optuna
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search.sample import Domain

import spaces
from model.data import Split
from model.overrides import interrupted_code, reject
import internals
from results.collect import OlderExperiment, collect, has_tune_snapshot, reading_tune_state
from results.schema import is_file, join, locate, write_json
from search.progress import Progress, stop_frames
from search.replay import records
from search.replay import surrogate as replay
from search.report import FAILED, print_report
from search.runtime.devices import mps_note
from search.runtime.lock import Lock, LockError
from search.runtime.ray_session import RayUnavailable, ray_session
from search.runtime.storage import resolve
from search.settings import MAX_FAILURES, METRIC, MODE, RUN_FILE, Settings, check_resources, param_space
from search.strategy import study, warm
from search.strategy.asha import FairASHA, RungKeeper, make_scheduler
from search.strategy.searcher import HonestOptunaSearch, probes
from search.strategy.spend import DeviceSpend, SpendStopper
from search.trainable import SharedSplit, train_trial

# Tune's own console output is replaced by search.progress unless verbose=true; a snapshot of the
# experiment per trial checkpoint is what we want, so its "excessive sync" warning is noise.
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
# Tune's log lines repeat what search.report says, less clearly: a trial's traceback at each
# failure (error.txt in the trial's folder keeps them all), "Trials did not complete", and after
# Ctrl-C its own Tuner.restore(...) hint, which is not how this service resumes.
TUNE_LOGGERS = ("ray.tune", "ray.train")
TUNER_FILE = "tuner.pkl"  # Tune's pickled Tuner: present once a search can be restored
# Tune adds CSV and TensorBoard loggers to every run unless told not to. Only result.json (its JSON
# logger, which the engine adds itself) is read, by results.collect; the TensorBoard logger flushed
# and fsynced its file about nine times a trial, on the driver's loop, while a slot waited.
AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def quiet() -> None:
    """Leave the console to search.progress and search.report: no Tune tables, logs or Optuna info lines."""
    os.environ.update(QUIET_ENV)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in TUNE_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run_search(s: Settings, split: Split) -> int:
    if not s.verbose:
        quiet()
    lock: Lock | None = None
    try:
        with ray_session(s.address, verbose=s.verbose) as resources:
            try:
                check_resources(s, resources)  # Ray's count: a container's quota may give fewer CPUs than os.cpu_count()
            except ValueError as e:
                return reject(e)
            note = None if s.address or s.replay else mps_note(s.gpus_per_trial, resources.get("GPU", 0))
            if note:
                print(note, file=sys.stderr)
            lock = _take_lock(s)
            tuner = _restore(s, split) if s.resume and _restorable(s) else create_tuner(s, split)
            fit(tuner)
        collect(s.experiment)
        return print_report(s.location, _expected_trials(s, internals.tuner_searcher(tuner)), s.resume_command(), MAX_FAILURES)
    except (RayUnavailable, LockError, OlderExperiment) as e:
        return reject(e)
    except OSError as e:  # the storage failed under the search (a full disk, a lost mount): what was saved stays
        print(f"error: {' '.join(str(e).split())}; once that is fixed, resume with  {s.resume_command()}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:  # a second Ctrl-C, or one before or after Tune's loop
        print(s.interrupted_line())
        return interrupted_code()
    finally:
        if lock is not None:
            lock.release()


def _expected_trials(s: Settings, searcher: HonestOptunaSearch) -> int:
    """s.trials, or the trials started when the device budget ended the search (a finished search,
    not an interrupted one). Says what the trials spent, and what max_params refused."""
    hours, devices = s.device_hours
    unit = "GPU" if s.gpus_per_trial else "CPU"
    limit = f" of {hours:g}" if hours else ""
    print(f"device time: {searcher.spend.hours:.3g}{limit} {unit}-hours (epoch seconds x {devices:g} {unit}s a trial)")
    if searcher.refused:
        print(f"{searcher.refused} suggested networks above max_params={s.max_params:,} were refused, never trained")
    if hours and not searcher.spend.affords(s.grace):
        print(f"the {unit}-hour budget is spent: the search ends here")
        return len(internals.optuna_study(searcher).get_trials(deepcopy=False)) - searcher.refused
    return s.trials


def _take_lock(s: Settings) -> Lock:
    """The experiment's lock; LockError when it cannot be taken, or another process got there
    first (it holds the lock, or it started this search): search.run's checks looked before Ray
    started, this is the one that counts."""
    lock = Lock(s.experiment, "search.run", shown=s.location)
    lock.acquire()
    if lock.note:
        print(lock.note, file=sys.stderr)
    if not s.resume and is_file(join(s.experiment, RUN_FILE)):
        lock.release()
        raise LockError(f"{s.location} exists: add resume=true to continue it, or give another name=")
    return lock


def trainable(s: Settings, split: Split | None, make_trainer=None):
    """make_trainer: what builds a trial's trainer (search.trainable.train_trial's default: the real one)."""
    if s.replay:
        record = records.load(s.replay)
        return replay.replay_trainable(replay.Surrogate(record), s.seed, replay.time_scale_for(record, replay.EPOCH_SLEEP))
    extra = {"make_trainer": make_trainer} if make_trainer else {}
    return tune.with_resources(
        tune.with_parameters(train_trial, split=SharedSplit.put(split), checkpoint_every=s.checkpoint_every,
                             measure_latency="latency_ms" in s.objectives, **extra),
        {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial},
    )


def create_tuner(s: Settings, split: Split, make_trainer=None):
    """A new Tuner for `s`; writes run.json first, unless a resume finds one but nothing to restore
    (_restorable): then the study its first attempt opened goes, as an asked trial there would stay
    RUNNING for good. make_trainer: see trainable()."""
    journal = study.journal_path(s.experiment)
    if s.resume and journal is not None and os.path.exists(journal):
        os.remove(journal)
    if not is_file(join(s.experiment, RUN_FILE)):
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        marks = {}
        if s.replay:  # which curves answered the trials, and that their seconds are simulated
            record = records.load(s.replay)
            marks = replay.replay_marks(record, replay.time_scale_for(record, replay.EPOCH_SLEEP))
        write_json({**s.recorded(), "started": started, **marks}, join(s.experiment, RUN_FILE))
    hours, devices = s.device_hours
    space = records.load(s.replay).param_space() if s.replay else param_space(s)  # a record's narrowed widths
    start = warm.load(s.warm_start, space, s.max_epochs) if s.warm_start else warm.WarmStart((), ())
    scheduler = scheduler_for(s, warm_trials=len(start.trials))
    for note in start.notes:
        print(note, file=sys.stderr)
    searcher = HonestOptunaSearch(
        max_epochs=s.max_epochs, seed=warm.sampler_seed(s.seed, s.warm_start), journal=study.journal_path(s.experiment),
        base={k: v for k, v in space.items() if not isinstance(v, Domain)}, max_params=s.max_params,
        spend=DeviceSpend(hours * 3600 if hours else math.inf, devices), first_rung=s.grace, warm=start.trials,
        objectives=s.objectives, slots=trials_at_once(s, ray.cluster_resources()),
    )
    stopper = SpendStopper(searcher)  # stops everything once the device budget is spent
    return build_tuner(
        s, trainable(s, split, make_trainer), param_space=space, search_alg=searcher, scheduler=scheduler,
        callbacks=[
            RungKeeper(scheduler, s.experiment),
            Progress(s.trials, s.max_epochs, shown=sorted(spaces.get(s.space).PARAMS), grace=s.grace, eta=s.eta,
                     stopper=stopper),
        ],
        stop=stopper,
    )


def scheduler_for(s: Settings, warm_trials: int = 0) -> FairASHA:
    """The search's ASHA, with TPE's random start-up as probes (search.strategy.asha); warm_trials:
    a warm start's, which count towards the start-up."""
    return make_scheduler(s.max_epochs, s.grace, s.eta, s.objectives, probes(s.trials, warm_trials, s.objectives))


def trials_at_once(s: Settings, resources: dict) -> int | None:
    """Trials that fit at once on `resources` (Ray's, at the start), when fewer than s.concurrency: the
    rest are staged, each ready for the next slot that frees (HonestOptunaSearch's `slots`). None: all
    run at once. A cluster that grows later gets more slots than this; its searcher then defers a
    suggestion it need not, at most one step of Tune's loop each time a trial ends."""
    fits = [resources.get(kind, 0.0) / need for kind, need in (("CPU", s.cpus_per_trial), ("GPU", s.gpus_per_trial)) if need]
    at_once = math.floor(min(fits) + 1e-9) if fits else s.concurrency
    return at_once if 0 < at_once < s.concurrency else None


def build_tuner(s: Settings, trainable, *, search_alg, callbacks: list, stop, trials: int | None = None,
                scheduler=None, param_space: dict | None = None) -> tune.Tuner:
    """The one way this service makes a Tuner (a search, a recording): `s`'s storage, name,
    concurrency and verbosity; trials named by id; reused actors; the last checkpoint kept; failed
    trials retried; result.json for results.collect. trials: s.trials unless given."""
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=s.trials if trials is None else trials,
            max_concurrent_trials=s.concurrency,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=resolve(s.storage),  # absolute: Tune fails on a relative local path
            callbacks=[*callbacks, internals.ResultLog()],  # result.json, which results.collect reads; see AUTO_LOGGERS
            stop=stop,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            verbose=2 if s.verbose else 0,
        ),
    )


def fit(tuner: tune.Tuner) -> tune.ResultGrid:
    """tuner.fit(), with Tune's CSV and TensorBoard loggers off where the Tuner has its own JSON
    logger (a search made before it had one gets Tune's defaults back) and the live view taken
    down however it ends. Ctrl-C: Tune stops the trials, saves the experiment and returns.

    Tune installs its own Ctrl-C handler (and SIGUSR1's) for the run and puts the previous one back
    only when a signal comes: after a run that ended by itself, the first Ctrl-C or SIGTERM while
    the report is made would only set Tune's flag, and the command would go on to exit 0. So the
    handlers from before the run come back however it ends."""
    json_logged = any(isinstance(c, JsonLoggerCallback) for c in internals.tuner_callbacks(tuner))
    before = os.environ.get(AUTO_LOGGERS)
    os.environ[AUTO_LOGGERS] = "1" if json_logged else "0"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}
    try:
        return tuner.fit()
    finally:
        if threading.current_thread() is threading.main_thread():  # where Tune could install them
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        stop_frames()  # a second Ctrl-C skips the live view's end
        # Only for this fit: another Tuner in this process (a test's, a user's) gets Tune's defaults.
        if before is None:
            os.environ.pop(AUTO_LOGGERS, None)
        else:
            os.environ[AUTO_LOGGERS] = before


def trial_name(trial) -> str:
    """Trial folders named by id alone: Tune's default packs the whole config into the name.
    search.report.trial_folder finds them by this name."""
    return f"trial_{trial.trial_id}"


def _restorable(s: Settings) -> bool:
    """Whether the search has a Tuner and a snapshot of it to continue from. Tune saves its first
    snapshot as it creates the first trials; a search stopped before that (Ctrl-C, SIGTERM or a
    crash in its first seconds) trained nothing, and Tuner.restore would bring back a searcher with
    no space and one sample to run: create_tuner starts it again from its run.json."""
    return is_file(join(s.experiment, TUNER_FILE)) and has_tune_snapshot(s.experiment)


def _restore(s: Settings, split: Split):
    with reading_tune_state(s.location, "it cannot be resumed; start a new search under another name=, or move that "
                                        "folder away"):
        internals.point_search_generator(*locate(s.experiment))  # Tune restores it pointing at the old folder
        tuner = tune.Tuner.restore(s.experiment, trainable(s, split), resume_unfinished=True, resume_errored=False)
    # The Tuner was pickled with the folder of the search's first run, which may have moved since
    # (another storage=): rungs.json and the study's journal go where the experiment is now.
    for callback in internals.tuner_callbacks(tuner):
        if isinstance(callback, RungKeeper):
            callback.experiment = s.experiment
    internals.tuner_searcher(tuner).journal = study.journal_path(s.experiment)
    return tuner
