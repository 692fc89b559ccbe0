"""The seeds of a retrain as parallel Ray tasks: each trains on every training image and is
evaluated once on the test set; the driver prints each seed's epochs as they end. The task is a
module-level function so that workers import it (the package is installed)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from model import data as fmnist
from model.config import Config
from model.data import Split
from results.numbers import clock, counted
from search.retrain.plan import Plan
from search.runtime.devices import assigned_device, mps_note

MAX_RETRIES = 2  # a seed task lost with its worker or node runs again; an error in training does not
PROGRESS_POLL_S = 1.0  # seconds between the driver's looks for finished epochs
HEARTBEAT_S = 60.0  # seconds without a finished epoch before a line says the seeds are still training

class BadResources(ValueError):
    """cpus_per_trial / gpus_per_trial that the cluster cannot give: bad input, found before Ray
    starts on this machine's count (devices.local_resources) and again once it runs on Ray's."""



def retrain_seed(
    flat: dict[str, Any], split: Split, test_images: np.ndarray, test_labels: np.ndarray, device: str, threads: int,
    progress,
) -> dict[str, Any]:
    """Train one seed on the whole split, evaluate on the test set once; plain data back to the driver.
    device: "cpu", or "cuda" for the GPU Ray assigned this task. progress: a ray.util.queue.Queue
    that gets each epoch's row as it ends, for the driver's line per epoch (train_seeds)."""
    import torch

    from model.trainer import Trainer, on_device, score

    torch.set_num_threads(max(1, threads))
    cfg = Config.from_flat(flat)
    start = time.perf_counter()
    trainer = Trainer(cfg, split, "cpu" if device == "cpu" else assigned_device())
    epochs = []
    for _ in range(cfg.epochs):
        m = trainer.run_epoch()
        epochs.append({"seed": cfg.seed, "epoch": m.epoch, "train_loss": m.train_loss, "train_acc": m.train_acc,
                       "lr": m.lr, "seconds": m.seconds, "images_per_second": m.images_per_second})
        progress.put(epochs[-1])
    labels = on_device(test_labels, trainer.device)
    logits = trainer.logits(on_device(test_images, trainer.device))  # the one look at the test set
    test_loss, test_acc = score(logits, labels)
    no_mirror_acc = test_acc
    if cfg.mirror_tta:  # the same weights without the mirror average, to show what it adds
        net = trainer.eval_net()
        net.mirror_tta = False
        no_mirror_acc = score(trainer.logits(on_device(test_images, trainer.device)), labels)[1]
        net.mirror_tta = True
    return {
        "seed": cfg.seed,
        "epochs": epochs,
        "test_acc": test_acc,
        "test_acc_no_mirror": no_mirror_acc,
        "test_loss": test_loss,
        "seconds": time.perf_counter() - start,
        "params": trainer.params,
        "train_images": len(split.train_images),
        "device": str(trainer.device),
        "logits": logits.float().cpu().numpy(),
        # What was evaluated: the weight average when cfg.ema_epochs is on.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in trainer.eval_net().state_dict().items()},
    }


def resources(plan: Plan, cluster: dict[str, float]) -> tuple[float, float, str]:
    """(CPUs, GPUs, device) of each seed's task. By default the seeds share the GPUs there are,
    all at once: three seeds on one GPU get a third each (with MPS their kernels run side by side),
    instead of a whole GPU each, one after another."""
    gpus = plan.gpus_per_trial
    if gpus is None:
        have = int(cluster.get("GPU", 0))
        gpus = 1 / math.ceil(len(plan.seeds) / have) if have >= 1 and plan.device != "cpu" else 0.0
    cpus = plan.cpus_per_trial
    if cpus is None:
        cpus = 1.0 if gpus else max(1.0, float(int(cluster.get("CPU", 1) // len(plan.seeds))))
    if plan.device == "cuda" and not gpus:
        raise BadResources("device=cuda, but the cluster has no GPUs to give a seed; give gpus_per_trial= or device=cpu")
    device = "cpu" if plan.device == "cpu" or not gpus else "cuda"
    if plan.address:  # a joined cluster may autoscale: what it has now is no limit
        return cpus, gpus, device
    if gpus > cluster.get("GPU", 0):
        raise BadResources(f"gpus_per_trial={gpus:g} but this machine has {cluster.get('GPU', 0):g} GPUs")
    if cpus > cluster.get("CPU", 0):
        raise BadResources(f"cpus_per_trial={cpus:g} but this machine has {cluster.get('CPU', 0):g} CPUs")
    return cpus, gpus, device


def train_seeds(plan: Plan, split: Split, test: tuple[np.ndarray, np.ndarray], log=print) -> list[dict[str, Any]]:
    """All seeds as parallel Ray tasks (inside a ray_session); results in seed order. Logs a line per
    seed per epoch as it ends, and one every HEARTBEAT_S while none does (a CPU epoch of all the
    images takes minutes)."""
    import ray
    from ray.util.queue import Queue

    cpus, gpus, device = resources(plan, ray.cluster_resources())
    log(
        f"training {counted(len(plan.seeds), 'seed')} x {counted(plan.cfg.epochs, 'epoch')} on {len(split.train_images):,} images "
        f"(tasks of {cpus:g} CPU, {gpus:g} GPU, device {device})"
    )
    note = None if plan.address else mps_note(gpus, ray.cluster_resources().get("GPU", 0))
    if note:
        log(note)
    task = ray.remote(retrain_seed).options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES)
    split_ref, images_ref, labels_ref = ray.put(split), ray.put(test[0]), ray.put(test[1])  # once, shared
    # The seeds' epochs reach the driver as they end (a retrain runs for hours: never quiet). An actor
    # that takes no CPU: it must not wait for, nor hold, a CPU the seeds need.
    progress = Queue(actor_options={"num_cpus": 0})
    pending = {
        task.remote(replace(plan.cfg, seed=s).to_flat(), split_ref, images_ref, labels_ref, device, max(1, int(cpus)),
                    progress): s
        for s in plan.seeds
    }
    done: dict[int, dict[str, Any]] = {}
    reported = {s: 0 for s in plan.seeds}  # epochs each seed has reported
    started = last_line = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_POLL_S)
        for row in progress.get_nowait_batch(progress.qsize()):  # before a seed's result: its epochs first
            again = " (again: its worker was lost)" if row["epoch"] <= reported[row["seed"]] else ""
            reported[row["seed"]] = row["epoch"]
            log(f"  [{clock(time.monotonic() - started)}] seed {row['seed']}: epoch {row['epoch']}/{plan.cfg.epochs}{again}, "
                f"train loss {row['train_loss']:.4f}, train accuracy {100 * row['train_acc']:.2f}%, {row['seconds']:,.0f} s")
            last_line = time.monotonic()
        if not ready:
            if time.monotonic() - last_line >= HEARTBEAT_S:
                log(f"  [{clock(time.monotonic() - started)}] {still_running(sorted(pending.values()), reported, plan.cfg.epochs)}")
                last_line = time.monotonic()
            continue
        seed = pending.pop(ready[0])
        out = ray.get(ready[0])
        done[seed] = out
        log(
            f"  seed {seed}: test accuracy {100 * out['test_acc']:.2f}% (loss {out['test_loss']:.4f}), "
            f"{counted(len(out['epochs']), 'epoch')} in {out['seconds']:,.0f} s on {out['device']}"
        )
    return [done[s] for s in plan.seeds]


def still_running(seeds: list[int], reported: dict[int, int], epochs: int) -> str:
    """The heartbeat line: where each unfinished seed is. A seed that has reported its last epoch is
    being evaluated on the test set (minutes on a CPU for a wide network), not in another epoch."""
    where = [f"seed {s} on the test set" if reported[s] >= epochs else f"seed {s} in epoch {reported[s] + 1}" for s in seeds]
    return f"still running: {', '.join(where)}"


def load_data(plan: Plan) -> tuple[Split, tuple[np.ndarray, np.ndarray]]:
    """All training images (or a stratified subset), no validation set: everything trains; and the test set."""
    return fmnist.load_split(plan.data_dir, 0, plan.subset), fmnist.load("test", plan.data_dir)
