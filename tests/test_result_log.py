"""A trial restarted from its checkpoint keeps every row of its result.json (internals.ResultLog).

Tune syncs the driver's result.json to the storage in the background; on a trial's restart its JSON
logger copied the storage's copy back over the driver's, so the rows the storage did not yet hold
were lost. Here the storage's copy lags on purpose: the trial empties it (as a sync caught
mid-write leaves it) after the sync that carried epoch 1, then fails. A real local Ray and Tune.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
from conftest import local_ray

import internals

SYNC_WAIT_S = 60  # for Tune's background sync to carry epoch 1 to the storage


def fails_once_after_a_lagging_sync(config):
    from ray import tune

    if tune.get_checkpoint() is None:  # the first run: epoch 1, then the storage lags and the trial dies
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state").write_text("1")
            tune.report({"epoch": 1}, checkpoint=tune.Checkpoint.from_directory(folder))
        stored = Path(config["experiment"], f"trial_{tune.get_context().get_trial_id()}", "result.json")
        deadline = time.monotonic() + SYNC_WAIT_S
        while not (stored.exists() and '"epoch": 1' in stored.read_text()):
            assert time.monotonic() < deadline, "epoch 1 never reached the storage"
            time.sleep(0.05)
        stored.write_text("")
        raise RuntimeError("lost with its node")
    for epoch in (2, 3):  # the restart, from epoch 1's checkpoint
        tune.report({"epoch": epoch})


@pytest.fixture
def ray_runtime():
    with local_ray(__name__, num_cpus=1):
        yield


def test_a_trial_restarted_from_its_checkpoint_keeps_the_rows_the_storage_had_not_yet_synced(ray_runtime, tmp_path):
    from ray import tune

    experiment = tmp_path / "exp"
    tuner = tune.Tuner(
        fails_once_after_a_lagging_sync,
        param_space={"experiment": str(experiment)},
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="exp", verbose=0, callbacks=[internals.ResultLog()],
            failure_config=tune.FailureConfig(max_failures=1), checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    [result] = tuner.fit()
    assert result.error is None
    [stored] = experiment.glob("trial_*/result.json")
    assert [json.loads(line)["epoch"] for line in stored.read_text().splitlines()] == [1, 2, 3]
