"""The Ray Tune function trainable: one trial = one `model.Config` trained an epoch at a time.

Reports once per epoch; checkpoints once `checkpoint_every` seconds have passed since the trial
started or last checkpointed (Tune keeps the last), never after the final epoch. A retried or
resumed trial continues from its last checkpoint (from epoch 0 without one), so a crash costs each
running trial at most `checkpoint_every` seconds plus the epoch under way. Rarer checkpoints are
what makes a short search cheap: with one checkpoint an epoch, every epoch wrote and copied the
whole training state, and made Tune snapshot the whole experiment (CheckpointConfig(num_to_keep=1)
forces a snapshot whenever a trial's kept checkpoint changes). No scheduling decision needs a
checkpoint: ASHA stops trials, it never pauses them.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
import torch
from ray import tune

from model import latency
from model.config import Config
from model.data import Split
from model.trainer import DeviceSplit, Trainer
from search.runtime.devices import assigned_device
from search.settings import CHECKPOINT_EVERY_S

STATE_FILE = "state.pt"
# The search's data on this process's device, kept between the trials a reused actor runs:
# {(the data's object id, device): DeviceSplit}, one entry at most.
_ON_DEVICE: dict[tuple[str, str], DeviceSplit] = {}


@dataclass(frozen=True)
class SharedSplit:
    """The search's Split in Ray's object store, by reference: every trial's process fetches it
    once and keeps its copy on the device for the next trial it runs."""

    ref: ray.ObjectRef

    @classmethod
    def put(cls, split: Split) -> SharedSplit:
        return cls(ray.put(split))


def on_device(data: SharedSplit, device: str) -> DeviceSplit:
    """`data` on `device`, copied there by the first trial of this process (and again only when
    another search's data or another device comes)."""
    key = (data.ref.hex(), str(device))
    if key not in _ON_DEVICE:
        _ON_DEVICE.clear()  # the previous search's copy, if any, goes before the next is made
        _ON_DEVICE[key] = DeviceSplit.of(ray.get(data.ref), device)
    return _ON_DEVICE[key]


def train_trial(
    config: dict, split: SharedSplit, checkpoint_every: float = CHECKPOINT_EVERY_S, make_trainer: Callable[..., Trainer] = Trainer,
    measure_latency: bool = False,
) -> None:
    """`config` is a flat Config dict; `split` the search's data (SharedSplit, through tune.with_parameters).
    `checkpoint_every`: seconds between checkpoints (0: after every epoch but the last).
    `make_trainer(cfg, data, device=...)` (data: a DeviceSplit) builds what trains: benchmarks/orchestration.py hands in
    one that sleeps, to measure everything around the training through this very loop.
    `measure_latency`: time the network's forward passes once, before training (model.latency), and
    report latency_ms and latency_ms_256 with every epoch (a search whose objective names latency_ms)."""
    saved = time.monotonic()  # the work since then is what a crash would cost
    cfg = Config.from_flat(config)
    device = assigned_device()  # the GPU Ray assigned this trial, else the CPU
    trainer = make_trainer(cfg, on_device(split, device), device=device)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(torch.load(Path(folder) / STATE_FILE, weights_only=True, map_location="cpu"))
    timed = latency.measure(trainer.net, trainer.device, trainer.autocast) if measure_latency else {}
    # Host name plus Ray's node id: simulated nodes on one machine share a host name.
    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    while trainer.epoch < cfg.epochs:
        result = {**asdict(trainer.run_epoch()), "params": trainer.params, **timed, "node": node}
        if trainer.epoch == cfg.epochs or time.monotonic() - saved < checkpoint_every:
            tune.report(result)
            continue
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        saved = time.monotonic()
