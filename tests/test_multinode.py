"""A multi-node rehearsal on one machine: `python -m search.run address=...` against a simulated cluster.

`ray.cluster_utils.Cluster` starts a head with no CPUs (so no trial runs there) and two worker
nodes with 2 logical GPUs each; with gpus_per_trial=0.5 each node fits four trials. The search
runs as a subprocess, as a user runs it. Once every trial has reported an epoch (so has a
checkpoint), the test removes a node that still has a trial one epoch in, from the main thread as
Ray requires: that node's trials fail, are retried
(FailureConfig(max_failures=2)) and continue from their checkpoints on the surviving node.

The order in which a trial's epochs ran on which node comes from Tune's result.json files, as
written: the report's epochs.parquet keeps one row per epoch (the last written).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from results.schema import EPOCHS, TRIALS, read_table

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRIALS_N, MAX_EPOCHS, GRACE = 8, 3, 2  # grace 2: every trial runs at least 2 epochs, so one hit after epoch 1 must go on
GPUS_PER_NODE, GPUS_PER_TRIAL = 2, 0.5
PER_NODE = int(GPUS_PER_NODE / GPUS_PER_TRIAL)  # 4 trials fit on a node


@pytest.fixture
def cluster(monkeypatch):
    """Head (num_cpus=0) + two worker nodes; shut down whatever happens. Yields (cluster, worker nodes)."""
    # Before the cluster starts: its raylets and workers inherit this environment, so every node
    # can import `search` and no node turns token authentication on by itself.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=2, num_gpus=GPUS_PER_NODE) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, workers
    finally:
        cluster.shutdown()


def epoch_rows(experiment: Path) -> dict[str, list[dict]]:
    """trial id -> its result.json rows so far, in the order written ({"epoch", "node"} each)."""
    rows: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(str(experiment / "trial_*" / "result.json"))):
        trial = []
        for line in Path(path).read_text().splitlines():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:  # a line being written right now
                continue
            trial.append({"epoch": result["epoch"], "node": result["node"].rsplit(":", 1)[1]})
        rows[Path(path).parent.name.removeprefix("trial_")] = trial
    return rows


def test_a_lost_node_s_trials_resume_from_their_checkpoints_on_the_other(cluster, fmnist_dir, tmp_path):
    cluster, workers = cluster
    short = {node.node_id[:8]: node for node in workers}  # the trainable reports host:first-8-of-node-id
    name = "multinode"
    experiment = tmp_path / name
    command = [
        sys.executable, "-m", "search.run", "space=augmentation", f"address={cluster.address}", "shared=true",
        f"storage={tmp_path}", f"name={name}", f"data_dir={fmnist_dir}", f"trials={TRIALS_N}",
        f"concurrency={TRIALS_N}", f"max_epochs={MAX_EPOCHS}", f"grace={GRACE}", "eta=2",
        f"gpus_per_trial={GPUS_PER_TRIAL}", "cpus_per_trial=0.5", "subset=256", "val_size=200",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # PYTHONPATH and RAY_AUTH_MODE: set by the fixture
    started = time.monotonic()
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
    packed = False  # seen: every GPU of both nodes taken at once, i.e. four trials on each
    removed = None
    rows_at_removal: dict[str, list[dict]] = {}
    try:
        while proc.poll() is None:
            assert time.monotonic() - started < 150, "the search took longer than 150 s"
            available = cluster.global_state.available_resources_per_node()
            if all(node.node_id in available and available[node.node_id].get("GPU", 0) == 0 for node in workers):
                packed = True
            if removed is None:
                rows = epoch_rows(experiment)
                # Once every trial has a checkpoint: a node with a trial one epoch in ((grace=2) more to run).
                hit = [r[-1]["node"] for r in rows.values() if r and r[-1]["epoch"] < GRACE]
                if len(rows) == TRIALS_N and all(rows.values()) and hit:
                    removed = short[hit[0]]
                    rows_at_removal = rows
                    cluster.remove_node(removed)
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert removed is not None, "no epoch was reported before the search ended"
    survivor = next(n for n in workers if n is not removed).node_id[:8]
    gone = removed.node_id[:8]

    # The report: every trial exactly once, none in error, every epoch once and in order.
    trials = read_table(experiment / "report" / "trials.parquet", TRIALS)
    epochs = read_table(experiment / "report" / "epochs.parquet", EPOCHS)
    assert len(trials) == TRIALS_N and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}, trials[["trial_id", "status"]]
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    for row in trials.itertuples():
        assert epochs.loc[epochs["trial_id"] == row.trial_id, "epoch"].tolist() == list(range(1, row.epochs_run + 1))
        assert row.epochs_run >= GRACE
    assert {node.rsplit(":", 1)[1] for node in trials["node"]} <= {gone, survivor}
    assert {node.rsplit(":", 1)[1] for node in epochs["node"]} == {gone, survivor}

    # Both nodes ran trials, four each at first: eight slots, eight trials, all started together.
    rows = epoch_rows(experiment)
    assert set(rows) == set(trials["trial_id"])
    first_nodes = [r[0]["node"] for r in rows.values()]
    assert sorted(first_nodes.count(n) for n in (gone, survivor)) == [PER_NODE, PER_NODE], first_nodes
    assert packed, f"never saw both nodes running {PER_NODE} trials at once"

    # The lost node's trials went on from their checkpoints on the survivor: not restarted at epoch 1.
    moved = {t: r for t, r in rows.items() if {row["node"] for row in r} == {gone, survivor}}
    assert moved, f"no trial ran on both nodes; at removal: {rows_at_removal}"
    for trial_id, trial_rows in moved.items():
        on_gone = [row["epoch"] for row in trial_rows if row["node"] == gone]
        on_survivor = [row["epoch"] for row in trial_rows if row["node"] == survivor]
        assert trial_rows[: len(on_gone)] == [r for r in trial_rows if r["node"] == gone], "back to the lost node"
        assert on_gone[0] == 1 and 1 < on_survivor[0] <= on_gone[-1] + 1, (trial_id, trial_rows)
        # Tune recorded the failure that moved it (and retried it: max_failures=2, status not error).
        assert (experiment / f"trial_{trial_id}" / "error.txt").exists(), trial_id
    print(f"search + cluster: {time.monotonic() - started:.0f} s; moved trials: {sorted(moved)}")
