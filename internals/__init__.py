"""Every private attribute of Ray and Optuna the project relies on, and nowhere else.

A layer below `search` and `results` (both read Tune's files through it); it imports neither.

Neither library offers these through public API. An upgrade may rename or move them without
notice; tests/test_internals.py exercises each one on real objects, so the upgrade fails there, by
name, rather than in the middle of a search or a resume. Ray is pinned (ray[tune]==2.60.0) and
Optuna bounded (>=5,<6) in pyproject.toml; revisit this module whenever either changes.
"""

from __future__ import annotations

import copy
import fnmatch
import os
from collections.abc import Callable, Container
from typing import Any

import optuna
import pyarrow.fs as pafs
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
import ray.cloudpickle as cloudpickle
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.tune import Callback, Tuner
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch


# --- Ray's OptunaSearch keeps its study, its Optuna trials and what it has told privately. ----------


def optuna_study(searcher: OptunaSearch) -> optuna.Study:
    """The study the searcher asks and tells (None until Tune has called set_search_properties)."""
    return searcher._ot_study


def optuna_trial(searcher: OptunaSearch, trial_id: str) -> optuna.Trial:
    """The Optuna trial behind a Tune trial id."""
    return searcher._ot_trials[trial_id]


def forget_trial(searcher: OptunaSearch, trial_id: str) -> None:
    """Drop the Optuna trial behind a Tune trial id, so that the next suggest() asks a new one."""
    del searcher._ot_trials[trial_id]


def told(searcher: OptunaSearch) -> set[str]:
    """The Tune trial ids whose end the searcher has told Optuna (the set itself: add to it)."""
    return searcher._completed_trials


def use_storage(searcher: OptunaSearch, storage: optuna.storages.BaseStorage) -> None:
    """Make the study that set_search_properties creates live in `storage` (OptunaSearch only takes
    a storage in its constructor, before the experiment folder exists)."""
    searcher._storage = storage


def point_journal(study: optuna.Study, backend: JournalFileBackend) -> None:
    """Make a study unpickled from a snapshot read and write the journal file of `backend`: its
    JournalStorage keeps the path it was pickled with (an experiment folder may have moved since)."""
    study._storage._backend = backend


# --- Optuna's TPESampler reads a study's trials through the private Study._get_trials. -------------


# How a sampler should see a finished trial, when not as it is: (state, values); None: as it is.
Relabel = Callable[[FrozenTrial], tuple[TrialState, list[float] | None] | None]


def study_seen_as(study: optuna.Study, seen: Relabel) -> optuna.Study:
    """`study` as a sampler should see it: a finished trial for which `seen(trial)` gives (state,
    values) reads with that state and those values, one per objective (a copy: the storage is
    untouched); every other trial, and everything else, passes through to `study`.

    TPESampler reads trials only through Study._get_trials (its start-up count, its good/bad split).
    With constant_liar=True it puts a RUNNING trial among the bad ones without counting it towards
    n_startup_trials or the size of the good set; it ranks COMPLETE trials by their value, ahead of
    PRUNED ones (ranked by how far they got, then their last intermediate value).
    search.strategy.searcher.TPEWithRefusals hands it this view."""
    return _SeenView(study, seen)


class _SeenView:
    def __init__(self, study: optuna.Study, seen: Relabel) -> None:
        self._study, self._seen = study, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        shown = []
        for trial in self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache):
            relabel = self._seen(trial) if trial.state.is_finished() else None
            if relabel is not None:
                trial = copy.copy(trial)
                trial.state, trial.values = relabel
            if states is None or trial.state in states:
                shown.append(trial)
        return shown


# TPESampler's good/bad split, (study, trials, n_below) -> (good, bad), called each time TPE models the
# results (not in its random start-up): tests/test_searcher.py watches which trials land in the good set.
TPE_SPLIT = "optuna.samplers._tpe.sampler._split_trials"


# --- Ray's Tuner: a restored Tuner's searcher and callbacks are only reachable privately. ----------


def tuner_searcher(tuner: Tuner) -> Searcher:
    """The search algorithm a (restored) Tuner was built with, as given to TuneConfig."""
    return tuner._local_tuner._tune_config.search_alg


def tuner_callbacks(tuner: Tuner) -> list[Callback]:
    """The callbacks a (restored) Tuner was built with, as given to RunConfig."""
    return tuner._local_tuner.get_run_config().callbacks or []


# --- Tune restores a moved experiment's search generator with the folder it was saved in. ------------


def point_search_generator(fs: pafs.FileSystem, folder: str) -> None:
    """Make the trials a restored search creates go to `folder`, where the experiment is now.

    Tune moves the trials it restores into a moved experiment's new folder, but not its search
    generator, which it restores with the storage it was saved with: every trial created after the
    restore would write into the old folder, or, with that folder gone, fail with "Unable to set up
    cluster storage". So the generator's saved states (search_gen_state-*.json: a cloudpickled dict
    whose "experiment" holds that StorageContext) are pointed at the new folder first, the three
    fields Tune's own restore updates for its trials (TuneController._restore_trials). Exercised by
    tests/test_search_run.py's moved-experiment resume."""
    parent, name = folder.rsplit("/", 1)
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        if not fnmatch.fnmatch(info.base_name, "search_gen_state-*.json"):
            continue
        with fs.open_input_stream(info.path) as stream:
            state = cloudpickle.loads(stream.readall())
        storage = state["experiment"].storage  # also the one in its spec: the same object
        if (storage.storage_fs_path, storage.experiment_dir_name) == (parent, name):
            continue
        storage.storage_filesystem, storage.storage_fs_path, storage.experiment_dir_name = fs, parent, name
        temp = f"{folder}/.{info.base_name}.{os.getpid()}.tmp"
        with fs.open_output_stream(temp) as out:
            out.write(cloudpickle.dumps(state))
        fs.move(temp, info.path)  # a rename: a crash leaves the old state or the new, never half


# --- Ray's ASHAScheduler does not expose its rungs (ray-project/ray#30838: they are not saved). -----


def asha_rungs(scheduler: ASHAScheduler) -> list[tuple[float, dict[str, float]]]:
    """The (milestone, {trial_id: metric x sign}) pairs of the scheduler's single bracket, highest
    milestone first, as live objects: updating a dict updates the scheduler."""
    (bracket,) = scheduler._brackets
    return bracket._rungs


# --- Tune's JSON logger replaces a restarted trial's result.json with the storage's copy. -----------


class ResultLog(JsonLoggerCallback):
    """Tune's JSON logger (each trial's result.json, which results.collect reads), except that a trial
    restarted in the same run keeps the file this driver has been writing.

    On a trial's restart from a checkpoint (a lost node, a crashed trial), Tune's own copies the
    storage's result.json over the driver's (JsonLoggerCallback._restore_from_remote). That copy is
    only as new as the last background sync, and one read while a sync rewrites it is empty: the
    rows before the restart were lost (tests/test_result_log.py; a lost node did it in
    tests/test_multinode.py). Only a driver that starts without the file, as Tuner.restore does after
    a stop or a crash, takes the storage's copy."""

    def _restore_from_remote(self, file_name: str, trial: Trial) -> None:
        if not os.path.exists(os.path.join(trial.local_path, file_name)):
            super()._restore_from_remote(file_name, trial)


# --- Tune's storage context: where a trial's files are (ray.train._internal.storage). ---------------


def trial_folder(trial: Trial) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a trial's folder: result.json, params.json, checkpoints."""
    return trial.storage.storage_filesystem, trial.storage.trial_fs_path


def tune_controller_class() -> type:
    """Tune's driver loop (ray.tune.execution.tune_controller.TuneController): benchmarks/orchestration.py
    times its experiment snapshots (checkpoint, save_to_dir)."""
    from ray.tune.execution.tune_controller import TuneController

    return TuneController


# ExperimentAnalysis logs through this module logger (a warning per trial without a result file).
EXPERIMENT_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"

# --- ray.init has no public way to put an embedded Ray's session files somewhere of its own. --------


def ray_temp_dir(folder: str) -> dict[str, str]:
    """ray.init's keyword that makes a local Ray keep its session files (sockets, logs) under
    `folder` instead of /tmp/ray (search.runtime.ray_session)."""
    return {"_temp_dir": folder}


# --- The cluster launcher's offline checks (ray.autoscaler._private.util), as `ray up` runs them. ---


def validate_cluster_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with Ray's provider defaults merged in; raises (Ray's own exception types) where
    `ray up` would refuse it before contacting the cloud. `config` is left unchanged."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# The fake multi-node provider that scripts/autoscale_rehearsal.yaml names.
FAKE_MULTINODE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
