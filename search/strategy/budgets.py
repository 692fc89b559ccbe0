"""Named budgets: how many trials, how long each may train, how ASHA cuts, on which data."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from model.registry import Registry

PER_GPU = ("trials", "concurrency", "gpu_hours")  # what a GPU budget gives each GPU


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

    def values(self, gpus: int) -> dict:
        """The search keys this budget gives a machine with `gpus` GPUs: a GPU budget's trials,
        concurrency and device-hours are each GPU's, so the search grows with the machine."""
        values = asdict(self)
        if self.gpus_per_trial and gpus > 1:
            for key in PER_GPU:
                if values[key] is not None:
                    values[key] = type(values[key])(values[key] * gpus)
        return values


BUDGETS: Registry[Budget] = Registry("budget", {
    # A few minutes on 2 CPU cores: 8 short trials on a 3,000-image subset, rungs at epochs 1 and 2.
    "smoke": Budget(trials=8, max_epochs=3, grace=1, eta=2, concurrency=2, cpus_per_trial=1, gpus_per_trial=0,
                    subset=3000, val_size=1000),
    # Meant for GPUs, boxed in time: 8 minutes of one H100/H200 (each GPU gets the trials,
    # concurrency and GPU-hours below). Full data, rungs at epochs 3, 9 and 27, four trials at once
    # per GPU (gpus_per_trial=0.25; with MPS, 230k img/s in all for the seed network on an H200)
    # and four more staged, so a slot that frees gets its next trial without waiting for TPE. What
    # ends it is the device budget: 0.09 GPU-hours of trial epochs (epoch seconds x 0.25) is 324
    # GPU-seconds, the trials' share of 8 minutes less Ray's start (~25 s) at an efficiency of 0.75
    # (the target is 0.85). At 1.0-1.4 s an epoch (four trials packed, seed to 1M-parameter
    # networks) and 7-9 epochs a trial under ASHA, that is about 100-180 trials: `trials` is the cap
    # should the trials be cheaper than that.
    "standard": Budget(trials=160, max_epochs=30, grace=3, eta=3, concurrency=8, cpus_per_trial=1,
                       gpus_per_trial=0.25, subset=None, val_size=6000, gpu_hours=0.09),
})
get = BUDGETS.lookup
