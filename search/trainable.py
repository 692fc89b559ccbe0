"""The Ray Tune function trainable: one trial = one `model.Config` trained an epoch at a time.

Reports once per epoch with a checkpoint (Tune keeps the last), so a retried or resumed trial
continues from its last finished epoch instead of starting over.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import ray
import torch
from ray import tune

from model.config import Config
from model.data import Split
from model.trainer import Trainer
from search.devices import assigned_device

STATE_FILE = "state.pt"


def train_trial(config: dict, split: Split, make_trainer: Callable[..., Trainer] = Trainer) -> None:
    """`config` is a flat Config dict; `split` arrives through the object store (tune.with_parameters).
    `make_trainer(cfg, split, device=...)` builds what trains: benchmarks/orchestration.py hands in
    one that sleeps, to measure everything around the training through this very loop."""
    cfg = Config.from_flat(config)
    trainer = make_trainer(cfg, split, device=assigned_device())  # the GPU Ray assigned this trial, else the CPU
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(torch.load(Path(folder) / STATE_FILE, weights_only=True, map_location="cpu"))
    # Host name plus Ray's node id: simulated nodes on one machine share a host name.
    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    while trainer.epoch < cfg.epochs:
        metrics = trainer.run_epoch()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            tune.report(
                {**asdict(metrics), "params": trainer.params, "node": node},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
