"""Named budgets: how many trials, how long each may train, how ASHA cuts, on which data."""

from __future__ import annotations

from dataclasses import dataclass

from model.registry import Registry


@dataclass(frozen=True)
class Budget:
    trials: int  # Optuna suggestions (Tune samples)
    max_epochs: int  # ASHA's max_t; also each trial's schedule length
    grace: int  # epochs before ASHA may stop a trial (its first rung)
    eta: int  # ASHA's reduction factor: keep the top 1/eta at each rung
    concurrency: int  # trials at once: TPE learns only from finished work, so not "as many as fit"
    cpus_per_trial: float
    gpus_per_trial: float  # fractional: 0.25 packs four trials on one GPU
    subset: int | None  # training images (stratified); None = all 54,000 left after validation
    val_size: int  # validation images held out of the 60,000 training images
    max_params: int | None = None  # networks with more parameters are never trained (refused at suggestion)
    gpu_hours: float | None = None  # device time the search may spend: trials' epoch seconds x their GPUs
    cpu_hours: float | None = None  # the same for a CPU search (epoch seconds x CPUs)


BUDGETS: Registry[Budget] = Registry("budget", {
    # A few minutes on 2 CPU cores: 8 short trials on a 3,000-image subset, rungs at epochs 1 and 2.
    "smoke": Budget(trials=8, max_epochs=3, grace=1, eta=2, concurrency=2, cpus_per_trial=1, gpus_per_trial=0,
                    subset=3000, val_size=1000),
    # Meant for GPUs: full data, rungs at epochs 3, 9 and 27, four trials per GPU. Four trials
    # packed on an H200 trained 230k img/s in all under MPS (cluster.yaml starts it), 139k without,
    # against 144k for one trial alone: packing pays only with MPS, and never costs. Sized from that
    # speed: ASHA runs ~8.6 epochs a trial on average, and a `full` network under 1M parameters
    # costs ~1.4x the seed network's FLOPs, so 128 trials are ~10 minutes of H200 arithmetic; with
    # the per-trial overheads measured in a short search (efficiency ~0.4) an estimated 25-30 minutes.
    "standard": Budget(trials=128, max_epochs=30, grace=3, eta=3, concurrency=8, cpus_per_trial=1,
                       gpus_per_trial=0.25, subset=None, val_size=6000),
})
get = BUDGETS.lookup
