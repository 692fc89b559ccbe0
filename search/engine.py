"""The Tune side of a search: Tuner (new or restored), TPE, ASHA, the live view, the report."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import optuna
from ray import tune

import spaces
from model.data import Split
from model.overrides import reject
from results.collect import collect
from results.load import load
from results.schema import write_json
from results.show import top_trials_table, wide_console
from search.asha import RungKeeper, make_scheduler
from search.progress import Progress
from search.ray_session import ray_session
from search.run import METRIC, MODE, RUN_FILE, Settings, param_space
from search.searcher import HonestOptunaSearch
from search.trainable import train_trial

# Tune's own console output is replaced by search.progress unless verbose=true; a snapshot of the
# experiment per epoch checkpoint is what we want, so its "excessive sync" warning is noise.
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
INTERRUPTED = 130  # the shell's code for "stopped by Ctrl-C"
MAX_FAILURES = 2  # retries per trial, each from its last checkpoint (a lost node, a flaky GPU)


def quiet() -> None:
    """Leave the console to search.progress: no Tune tables, no Optuna info lines."""
    os.environ.update(QUIET_ENV)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_search(s: Settings, split: Split) -> int:
    if not s.verbose:
        quiet()
    with ray_session(s.address, verbose=s.verbose) as resources:
        problem = _resources_problem(s, resources)
        if problem:
            return reject(ValueError(problem))
        tuner = _restore(s, split) if s.resume else create_tuner(s, split)
        tuner.fit()  # Ctrl-C: Tune stops the trials, saves the experiment and returns what finished
    return _report(s)


def _resources_problem(s: Settings, resources: dict) -> str | None:
    """On an embedded Ray the machine's resources are final; a cluster may still scale up."""
    if s.address:
        return None
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    if s.gpus_per_trial > gpus:
        return f"gpus_per_trial={s.gpus_per_trial} but this machine has {gpus:g} GPUs; use gpus_per_trial=0 or address="
    if s.cpus_per_trial > cpus:
        return f"cpus_per_trial={s.cpus_per_trial} but this machine has {cpus:g} CPUs"
    return None


def _trainable(s: Settings, split: Split):
    return tune.with_resources(
        tune.with_parameters(train_trial, split=split), {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    )


def create_tuner(s: Settings, split: Split):
    scheduler = make_scheduler(s.max_epochs, s.grace, s.eta)
    tuner = tune.Tuner(
        _trainable(s, split),
        param_space=param_space(s),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=HonestOptunaSearch(max_epochs=s.max_epochs, seed=s.seed),
            scheduler=scheduler,
            num_samples=s.trials,
            max_concurrent_trials=s.concurrency,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=s.storage if "://" in s.storage else os.path.abspath(s.storage),
            callbacks=[
                RungKeeper(scheduler, s.experiment),
                Progress(s.trials, s.max_epochs, shown=sorted(spaces.get(s.space).PARAMS)),
            ],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            verbose=2 if s.verbose else 0,
        ),
    )
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # Written after the Tuner saved itself: from here on the search can be resumed.
    write_json({**s.recorded(), "started": started}, f"{s.experiment}/{RUN_FILE}")
    return tuner


def trial_name(trial) -> str:
    """Trial folders named by id alone: Tune's default packs the whole config into the name."""
    return f"trial_{trial.trial_id}"


def _restore(s: Settings, split: Split):
    return tune.Tuner.restore(s.experiment, _trainable(s, split), resume_unfinished=True, resume_errored=False)


def _report(s: Settings) -> int:
    collect(s.experiment)
    exp = load(s.experiment)
    console = wide_console()
    console.print(top_trials_table(exp, n=5))
    finished = exp.trials["status"].isin(["completed", "pruned", "error"]).sum()
    console.print(f"{finished} of {s.trials} trials finished; read the tables with  python -m results.show {s.experiment}")
    if finished < s.trials:
        console.print(
            f"[yellow]interrupted[/]: resume with  python -m search.run name={s.name} storage={s.storage} resume=true"
        )
        return INTERRUPTED
    return 0
