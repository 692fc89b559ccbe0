"""Which torch device a Ray trial or task trains on: exactly the GPUs Ray assigned it, else the CPU.

Ray 2.60 no longer hides the GPUs from a task that asked for none (ray-project/ray#54868):
`torch.cuda.is_available()` is then True on a GPU node, and a trial that picked "cuda" by itself
would land, uncounted, on GPU 0. So the choice goes by `ray.get_gpu_ids()` alone.
"""

from __future__ import annotations

import os


def device_for(gpu_ids: list, visible: str | None, cuda_available: bool) -> str:
    """"cpu" or "cuda:N" for a worker that Ray assigned `gpu_ids`.

    `visible` is the worker's CUDA_VISIBLE_DEVICES: Ray sets it to the assigned ids, so the first
    assigned GPU is index 0 there (the position of its id in the list; its own id where Ray was
    told not to set the variable). A worker assigned GPUs where torch sees no CUDA at all holds
    logical GPUs only (the simulated nodes of tests and rehearsals): there is nothing to run on but
    the CPU. A fraction of a GPU (gpus_per_trial=0.25) is one id, shared with other trials.
    """
    if not gpu_ids or not cuda_available:
        return "cpu"
    first = str(gpu_ids[0])
    order = [d.strip() for d in visible.split(",")] if visible else []
    return f"cuda:{order.index(first) if first in order else int(first)}"


def assigned_device() -> str:
    """The device of the Ray trial or task this runs in (see device_for)."""
    import ray

    gpu_ids = ray.get_gpu_ids()
    if not gpu_ids:
        return "cpu"  # without asking torch: with no GPU assigned it would still see them all
    import torch

    return device_for(gpu_ids, os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available())
