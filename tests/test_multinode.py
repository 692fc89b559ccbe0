"""A multi-node rehearsal on one machine: `python -m search.run address=...` against a simulated cluster.

`ray.cluster_utils.Cluster` starts a head with no CPUs (so no trial runs there) and two worker
nodes with 1 logical GPU each; with gpus_per_trial=0.5 each node fits two trials. The search
runs as a subprocess, as a user runs it. Every trial is held at the start of its second epoch (a
sitecustomize on the cluster's PYTHONPATH wraps Trainer.run_epoch) until the test opens a gate:
once all four are held, each with its first epoch reported (so with a checkpoint), the test
removes one node, from the main thread as Ray requires, and then opens the gate. That node's two
trials fail, are retried (FailureConfig(max_failures=2)) and continue from their checkpoints on the
surviving node. Holding them makes the moment certain: no polling race for a trial "one epoch in".

The order in which a trial's epochs ran on which node comes from Tune's result.json files, as
written: the report's epochs.parquet keeps one row per epoch (the last written)."""

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
from conftest import HOLD_TRIALS

from results.schema import EPOCHS, TRIALS, read_table

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRIALS_N, MAX_EPOCHS, GRACE = 4, 3, 2  # grace 2: every trial runs at least 2 epochs, so one hit after epoch 1 must go on
# Two trials a node, sharing its GPU: every trial is a process of its own to start (each about as
# costly as a short test), so the fewest that still fill both nodes with shared GPUs.
GPUS_PER_NODE, GPUS_PER_TRIAL = 1, 0.5
PER_NODE = int(GPUS_PER_NODE / GPUS_PER_TRIAL)  # 2 trials fit on a node
# Deadlines for a hang only (the whole test takes about a minute here): never a margin to meet.
HOLD_WAIT_S, SEARCH_WAIT_S = 300, 300




@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """Head (num_cpus=0) + two worker nodes whose trials hold at their second epoch; shut down
    whatever happens. Yields (cluster, worker nodes, the gate folder)."""
    inject, gate = tmp_path / "inject", tmp_path / "gate"
    inject.mkdir()
    gate.mkdir()
    (inject / "sitecustomize.py").write_text(HOLD_TRIALS)  # HOLD_EPOCH 1: at the start of the second
    # Before the cluster starts: its raylets and workers inherit this environment, so every node
    # can import `search`, holds trials at the gate, and no node turns token authentication on by itself.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("HOLD_GATE", str(gate))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(inject), *filter(None, [os.environ.get("PYTHONPATH")])]))
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=2, num_gpus=GPUS_PER_NODE) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, workers, gate
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
    cluster, workers, gate = cluster
    short = {node.node_id[:8]: node for node in workers}  # the trainable reports host:first-8-of-node-id
    name = "multinode"
    experiment = tmp_path / name
    command = [
        sys.executable, "-m", "search.run", "space=augmentation", f"address={cluster.address}", "shared=true",
        f"storage={tmp_path}", f"name={name}", f"data_dir={fmnist_dir}", f"trials={TRIALS_N}",
        f"concurrency={TRIALS_N}", f"max_epochs={MAX_EPOCHS}", f"grace={GRACE}", "eta=2",
        f"gpus_per_trial={GPUS_PER_TRIAL}", "cpus_per_trial=0.5", "subset=256", "val_size=200", "width=0.25",
        "checkpoint_every=0",  # a checkpoint after every epoch: the lost trials go on from epoch 1's
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # PYTHONPATH, HOLD_GATE and RAY_AUTH_MODE: set by the fixture
    started = time.monotonic()
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        # Every trial held at its second epoch, its first one in result.json (so its checkpoint is
        # known to Tune): a state that lasts until the gate opens, so waiting for it races nothing.
        deadline = time.monotonic() + HOLD_WAIT_S
        while True:
            held = len(list(gate.glob("held-*")))
            at_removal = epoch_rows(experiment)
            if held == TRIALS_N and len(at_removal) == TRIALS_N and all(at_removal.values()):
                break
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, f"after {HOLD_WAIT_S} s: {held} trials held, epochs {at_removal}"
            time.sleep(0.2)
        # Four trials at once, two on each node: every GPU slot of both nodes taken.
        first_nodes = [rows[0]["node"] for rows in at_removal.values()]
        assert sorted(first_nodes.count(n) for n in short) == [PER_NODE, PER_NODE], first_nodes
        gone = first_nodes[0]
        on_gone = {trial_id for trial_id, rows in at_removal.items() if rows[0]["node"] == gone}
        cluster.remove_node(short[gone])
        (gate / "open").touch()
        proc.wait(timeout=SEARCH_WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    survivor = next(n for n in short if n != gone)

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

    # Each of the lost node's trials went on from its epoch-1 checkpoint on the survivor: not
    # restarted at epoch 1, never back on the lost node; the survivor's own trials never moved.
    rows = epoch_rows(experiment)
    assert set(rows) == set(trials["trial_id"])
    for trial_id, trial_rows in rows.items():
        nodes = [row["node"] for row in trial_rows]
        if trial_id in on_gone:
            assert nodes[0] == gone and set(nodes[1:]) == {survivor}, (trial_id, trial_rows)
            assert [row["epoch"] for row in trial_rows][:2] == [1, 2], (trial_id, trial_rows)
            # Tune recorded the failure that moved it (and retried it: max_failures=2, status not error).
            assert (experiment / f"trial_{trial_id}" / "error.txt").exists(), trial_id
        else:
            assert set(nodes) == {survivor}, (trial_id, trial_rows)
    print(f"search + cluster: {time.monotonic() - started:.0f} s; moved trials: {sorted(on_gone)}")
