"""How Tune's trials per minute grow with 1, 2 and 4 nodes: scheduling alone, with trials that SLEEP.

Each node count gets its own simulated cluster (ray.cluster_utils.Cluster on this one machine): a
head with no CPUs (nothing runs there) plus N worker nodes of 4 CPUs and 1 logical GPU. Trials ask
for {"cpu": 1, "gpu": 0.25}, so each node runs 4 at once and concurrency is 4 x N. A trial sleeps
`--epoch-seconds` per epoch instead of training and reports through tune.report once per epoch with
a small checkpoint, like search.trainable; ASHA (search.strategy.asha.make_scheduler) stops the weak ones,
HonestOptunaSearch proposes configs from the augmentation space, reuse_actors=True as in the real
search. 16 trials per node keep every slot busy (four waves).

trials/minute = trials / wall seconds of Tuner.fit() (actor start-up included). Fraction of linear
at N nodes = tpm(N) / (N x tpm(1)); target >= 0.8 at 4 nodes. Epochs/minute and slot use (sleep
seconds / (slots x wall)) are printed too: ASHA stops a different share of trials in each run, so
trials per minute also moves with the average trial length. "After start-up" counts from the
moment every slot has had a trial started (a Tune callback's clock) to the last trial's end: the
trial processes start once per slot (reuse_actors), so in a long search that start-up is noise.

Caveat: the simulated nodes share this machine's cores (os.cpu_count()), so the driver, the
raylets and 4 x N trial processes compete for them; a real cluster gives each node its own. The
control run (one node with as many slots as the largest cluster) tells the two apart: when it is
as slow as the cluster, the cost is in starting that many processes here, not in spanning nodes.

    python benchmarks/scaling.py [--nodes 1 2 4] [--trials-per-node 16] [--max-epochs 4] [--grace 2]
                                 [--epoch-seconds 1.0] [--no-checkpoint] [--repeat 2] [--no-control]
"""

from __future__ import annotations

import argparse
import random
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Before any cluster starts: its nodes inherit this environment.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
sys.path.insert(0, str(REPO))

from ray import tune  # noqa: E402

import spaces  # noqa: E402
from search.engine import build_tuner, fit, quiet  # noqa: E402
from search.runtime.ray_session import ray_session  # noqa: E402
from search.settings import Settings  # noqa: E402
from search.strategy.asha import make_scheduler  # noqa: E402
from search.strategy.searcher import HonestOptunaSearch  # noqa: E402

CPUS_PER_TRIAL, GPUS_PER_TRIAL = 1, 0.25
SLOTS_PER_NODE = 4  # a node: 4 CPUs and 1 logical GPU, 4 trials at once
TARGET = 0.8


def sleeping_trial(config: dict) -> None:
    """Stands in for search.trainable.train_trial: sleeps instead of training, same reports."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start = int((Path(folder) / "epoch").read_text())
    # A made-up accuracy curve whose level is a hash of the config: noise to TPE, so ASHA stops about
    # the same share of trials however many there are (trials per minute stays comparable).
    level = random.Random(repr(sorted(config.items()))).random()
    for epoch in range(start + 1, config["epochs"] + 1):
        time.sleep(config["epoch_seconds"])
        metrics = {"epoch": epoch, "val_acc": level * (1 - 0.5**epoch)}
        if config["checkpoint"]:
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "epoch").write_text(str(epoch))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)


class Clock(tune.Callback):
    """Driver-side times (perf_counter) at which trials start and end."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended: list[float] = []

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.started.append(time.perf_counter())

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.ended.append(time.perf_counter())

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.ended.append(time.perf_counter())


def measure(nodes: int, args: argparse.Namespace, storage: str, per_node: int = SLOTS_PER_NODE) -> dict:
    """One search on a fresh cluster of `nodes` nodes with `per_node` trial slots each."""
    from ray.cluster_utils import Cluster

    slots = per_node * nodes
    trials = args.trials_per_node * slots // SLOTS_PER_NODE
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=CPUS_PER_TRIAL * per_node, num_gpus=GPUS_PER_TRIAL * per_node)
        cluster.wait_for_nodes()
        with ray_session(cluster.address):
            scheduler = make_scheduler(args.max_epochs, args.grace, args.eta)
            clock = Clock()
            settings = Settings(
                space="augmentation", budget="smoke", trials=trials, max_epochs=args.max_epochs, grace=args.grace,
                eta=args.eta, concurrency=slots, cpus_per_trial=CPUS_PER_TRIAL, gpus_per_trial=GPUS_PER_TRIAL, seed=0,
                subset=None, val_size=1000, name=f"nodes{nodes}x{per_node}-{time.time_ns()}", storage=storage,
                address=cluster.address, shared=True,
            )
            tuner = build_tuner(  # the search's own Tuner, over trials that sleep
                settings, tune.with_resources(sleeping_trial, {"cpu": CPUS_PER_TRIAL, "gpu": GPUS_PER_TRIAL}),
                param_space={
                    **spaces.get("augmentation").PARAMS,
                    "epochs": args.max_epochs,
                    "epoch_seconds": args.epoch_seconds,
                    "checkpoint": args.checkpoint,
                },
                search_alg=HonestOptunaSearch(max_epochs=args.max_epochs, seed=0), scheduler=scheduler,
                callbacks=[clock], stop=None,
            )
            start = time.perf_counter()
            grid = fit(tuner)
            wall = time.perf_counter() - start
    finally:
        cluster.shutdown()
    epochs = sum(r.metrics.get("training_iteration", 0) for r in grid)
    errors = sum(r.error is not None for r in grid)
    # Start-up: until every slot has had a trial started (the trial actors' processes and imports).
    # Steady: from then until the last trial ended; reuse_actors pays the start-up once per slot.
    started = sorted(clock.started)
    all_busy = started[min(slots, len(started)) - 1] - start
    steady = max(clock.ended) - start - all_busy
    return {
        "nodes": nodes,
        "slots": slots,
        "trials": len(grid),
        "errors": errors,
        "epochs": epochs,
        "wall": wall,
        "startup": all_busy,
        "tpm": 60 * len(grid) / wall,
        "steady_tpm": 60 * len(grid) / steady,
        "epm": 60 * epochs / wall,
        "slot_use": epochs * args.epoch_seconds / (slots * wall),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--trials-per-node", type=int, default=16)
    ap.add_argument("--max-epochs", type=int, default=4)
    ap.add_argument("--grace", type=int, default=2)
    ap.add_argument("--eta", type=int, default=2)
    ap.add_argument("--epoch-seconds", type=float, default=1.0)
    ap.add_argument("--no-checkpoint", dest="checkpoint", action="store_false", help="report without a checkpoint")
    ap.add_argument("--repeat", type=int, default=2, help="runs per node count, pooled")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="skip the control run: one node with as many slots as the largest cluster")
    args = ap.parse_args()
    if 1 not in args.nodes:
        ap.error("--nodes must include 1: the fractions of linear are relative to one node")
    quiet()

    print(f"Scheduling alone, not training: every trial SLEEPS {args.epoch_seconds:g} s per epoch "
          f"(max {args.max_epochs} epochs, ASHA grace {args.grace}, eta {args.eta}), one tune.report per epoch"
          f"{' with a checkpoint' if args.checkpoint else ' without checkpoints'}.")
    print(f"Simulated nodes (ray.cluster_utils.Cluster, head num_cpus=0) of {CPUS_PER_TRIAL * SLOTS_PER_NODE:g} CPUs "
          f"and {GPUS_PER_TRIAL * SLOTS_PER_NODE:g} logical GPU: {SLOTS_PER_NODE} trials per node (cpu {CPUS_PER_TRIAL}, "
          f"gpu {GPUS_PER_TRIAL}), {args.trials_per_node} trials per node; all on this machine's {os.cpu_count()} cores.")
    runs: dict[int, list[dict]] = {n: [] for n in args.nodes}
    with tempfile.TemporaryDirectory(prefix="scaling-") as storage:
        for _ in range(args.repeat):
            for nodes in args.nodes:
                row = measure(nodes, args, storage)
                runs[nodes].append(row)
                print(_line(f"{nodes} node(s)", row), flush=True)
        if args.control:
            top = max(args.nodes)
            control = measure(1, args, storage, per_node=SLOTS_PER_NODE * top)
            print(_line(f"control: 1 node of {control['slots']} slots", control), flush=True)
    pooled = {n: _pooled(rows) for n, rows in runs.items()}
    if args.repeat > 1:
        print(f"  pooled over {args.repeat} runs per node count (all trials / all seconds):")
        for n, row in pooled.items():
            print(f"  {n} node(s): {row['tpm']:6.1f} trials/min ({row['epm']:6.1f} epochs/min), after start-up "
                  f"{row['steady_tpm']:6.1f} trials/min")
    base = pooled[1]
    for n, row in sorted(pooled.items()):
        if n == 1:
            continue
        print(f"  fraction of linear at {n} nodes: trials/min {row['tpm'] / (n * base['tpm']):.2f} "
              f"(epochs/min {row['epm'] / (n * base['epm']):.2f}; after start-up, trials/min "
              f"{row['steady_tpm'] / (n * base['steady_tpm']):.2f})")
    if 4 in pooled:
        top = pooled[4]
        whole = top["tpm"] / (4 * base["tpm"])
        steady = top["steady_tpm"] / (4 * base["steady_tpm"])
        print(f"target >= {TARGET} of linear trials/min at 4 nodes: whole run {whole:.2f} -> "
              f"{'met' if whole >= TARGET else 'MISSED'}; after start-up {steady:.2f} -> "
              f"{'met' if steady >= TARGET else 'MISSED'}")
        if whole < TARGET <= steady:
            print(f"  what misses it is the start-up ({base['startup']:.1f} s at 1 node, {top['startup']:.1f} s at 4): "
                  f"the {top['slots']} trial processes all start on this machine's {os.cpu_count()} cores"
                  f"{' (the control, one node with as many slots, pays the same)' if args.control else ''}; "
                  "on a real cluster each node starts its own")


def _pooled(rows: list[dict]) -> dict:
    """Rates over several runs of one node count: total trials (epochs) / total seconds."""
    wall = sum(r["wall"] for r in rows)
    steady = sum(60 * r["trials"] / r["steady_tpm"] for r in rows)
    trials, epochs = sum(r["trials"] for r in rows), sum(r["epochs"] for r in rows)
    return {**rows[0], "tpm": 60 * trials / wall, "epm": 60 * epochs / wall, "steady_tpm": 60 * trials / steady,
            "startup": sum(r["startup"] for r in rows) / len(rows)}


def _line(label: str, row: dict) -> str:
    return (f"  {label}: {row['trials']:3d} trials ({row['errors']} errors), {row['epochs']:3d} epochs in "
            f"{row['wall']:5.1f} s (start-up {row['startup']:4.1f} s)  ->  {row['tpm']:6.1f} trials/min "
            f"({row['epm']:6.1f} epochs/min, slot use {row['slot_use']:.2f}); after start-up "
            f"{row['steady_tpm']:6.1f} trials/min")


if __name__ == "__main__":
    main()
