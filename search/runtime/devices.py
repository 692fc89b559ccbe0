"""Which torch device a Ray trial or task trains on: exactly the GPUs Ray assigned it, else the CPU;
and what this machine's GPUs are like before Ray or torch start (how many; whether MPS runs).

Ray 2.60 no longer hides the GPUs from a task that asked for none (ray-project/ray#54868):
`torch.cuda.is_available()` is then True on a GPU node, and a trial that picked "cuda" by itself
would land, uncounted, on GPU 0. So the choice goes by `ray.get_gpu_ids()` alone.

Trials that share a GPU (gpus_per_trial=0.25) take turns on it unless NVIDIA's Multi-Process
Service runs: on an H200, four packed trials of the seed network trained 139k img/s in all
without it, 230k with it.
"""

from __future__ import annotations

import glob
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


MPS_START = "nvidia-cuda-mps-control -d"  # as root, once per machine; `echo quit | nvidia-cuda-mps-control` stops it
MPS_PIPES = "/tmp/nvidia-mps"  # where MPS keeps its control pipe unless CUDA_MPS_PIPE_DIRECTORY says otherwise
NVIDIA_GPUS = "/proc/driver/nvidia/gpus"  # one folder per GPU the NVIDIA driver knows
NVIDIA_DEVICES = "/dev/nvidia[0-9]*"  # one device file per GPU (nvidiactl and nvidia-uvm are not)


def mps_running(env: dict | None = None) -> bool:
    """Whether NVIDIA's MPS control daemon runs on this machine (its control pipe exists)."""
    env = os.environ if env is None else env
    return os.path.exists(os.path.join(env.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_PIPES, "control"))


def mps_note(gpus_per_trial: float, gpus: float, env: dict | None = None) -> str | None:
    """One line for a local run whose trials share GPUs while MPS is not running; None otherwise."""
    if not 0 < gpus_per_trial < 1 or not gpus or mps_running(env):
        return None
    return (f"note: trials share each GPU ({gpus_per_trial:g} GPU each) but NVIDIA's MPS is not running, so they "
            f"take turns on it; start MPS with  {MPS_START}")


def local_gpus(env: dict | None = None) -> int:
    """The GPUs a process started here would see, without starting CUDA: CUDA_VISIBLE_DEVICES where
    set, else those the NVIDIA driver lists, else its device files (a container may leave the
    driver's folder out, never the devices CUDA opens); 0 without either."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = 0
        for device in visible.split(","):
            if not device.strip() or device.strip().startswith("-"):  # CUDA stops at the first invalid id ("-1")
                break
            count += 1
        return count
    try:
        return len(os.listdir(NVIDIA_GPUS))
    except OSError:
        return len(glob.glob(NVIDIA_DEVICES))


def local_resources() -> dict[str, float]:
    """This machine's CPUs and GPUs as ray.cluster_resources() names them, without starting Ray: what
    the commands check a search against before an embedded Ray takes its 5-20 s to start. Ray,
    once started, may find fewer CPUs (a container's quota); its own count is checked again."""
    return {"CPU": os.cpu_count() or 1, "GPU": local_gpus()}
