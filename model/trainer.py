"""Training and evaluation of one config, an epoch at a time.

The training images go to the device once, as uint8; every epoch slices batches out of a
permutation drawn on the device and augments them there. No DataLoader: on a GPU a CPU pipeline
would cap throughput far below what the network can do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.augment import Augmentation, augment
from model.config import Config
from model.data import Split
from model.net import build, count_parameters

EVAL_BATCH = 2048  # images per evaluation step: inference needs no activations kept for backward


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float  # at the end of the epoch
    seconds: float  # the whole epoch: training and validation
    images_per_second: float  # training images per second of training time


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) on the device -> float (N, 1, 28, 28) in [0, 1], channels_last.

    channels_last measured faster for this network on both the CPU here (600 vs 450 img/s)
    and on CUDA tensor cores."""
    x = images_u8.unsqueeze(1).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last)


class Trainer:
    """One config's network, optimizer and schedule over one Split, an epoch at a time."""

    def __init__(self, cfg: Config, split: Split, device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device) if device else default_device()
        self.aug = Augmentation.from_config(cfg)
        torch.manual_seed(cfg.seed)
        self.net = build(cfg).to(self.device, memory_format=torch.channels_last)
        self.params = count_parameters(self.net)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.train_x, self.train_y = on_device(split.train_images, self.device), on_device(split.train_labels, self.device)
        self.val_x, self.val_y = on_device(split.val_images, self.device), on_device(split.val_labels, self.device)
        self.steps_per_epoch = len(self.train_x) // cfg.batch_size  # the last partial batch is dropped
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(self.train_x)} training images")
        self.optimizer = _optimizer(cfg, self.net)
        self.schedule = _schedule(cfg, self.optimizer, self.steps_per_epoch)
        self.epoch = 0
        # bf16 autocast on CUDA only: the CPU has no fast bf16 path for these convs here.
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def run_epoch(self) -> EpochMetrics:
        start = time.perf_counter()
        self.net.train()
        bs = self.cfg.batch_size
        # Dropout draws from the global RNG, which a checkpoint does not hold: reseed it from
        # self.gen (which the checkpoint does hold) so that a resumed run repeats the same masks.
        torch.manual_seed(int(torch.randint(2**62, (1,), device=self.device, generator=self.gen).item()))
        order = torch.randperm(len(self.train_x), device=self.device, generator=self.gen)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for step in range(self.steps_per_epoch):
            idx = order[step * bs : (step + 1) * bs]
            x = augment(_to_input(self.train_x[idx]), self.aug, self.gen)
            y = self.train_y[idx]
            with self.autocast:
                logits = self.net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        seen = self.steps_per_epoch * bs
        # .item() waits for the device, so on CUDA the training time covers the queued kernels too.
        train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
        train_seconds = time.perf_counter() - start
        val_loss, val_acc = self.evaluate(self.val_x, self.val_y)
        self.epoch += 1
        return EpochMetrics(
            epoch=self.epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            val_loss=val_loss,
            val_acc=val_acc,
            lr=self.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - start,
            images_per_second=seen / train_seconds,
        )

    @torch.inference_mode()
    def logits(self, images_u8: torch.Tensor) -> torch.Tensor:
        """float32 logits for uint8 images (N, 28, 28), in large batches, eval mode."""
        self.net.eval()
        out = []
        for i in range(0, len(images_u8), EVAL_BATCH):
            with self.autocast:
                out.append(self.net(_to_input(images_u8[i : i + EVAL_BATCH].to(self.device))).float())
        return torch.cat(out) if out else torch.empty(0, 10, device=self.device)

    def evaluate(self, images_u8: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) without label smoothing; NaN for no images (a final
        retrain on all 60,000 training images has no validation set)."""
        if len(labels) == 0:
            return math.nan, math.nan
        return score(self.logits(images_u8), labels.to(self.device))

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this epoch ended (for Tune checkpoints)."""
        return {
            "config": self.cfg.to_flat(),
            "epoch": self.epoch,
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if Config.from_flat(state["config"]) != self.cfg:
            raise ValueError("checkpoint was written for a different config")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.gen.set_state(state["generator"].cpu())
        self.epoch = state["epoch"]


def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of logits against labels on the same device."""
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def on_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A copy of `array` on `device`. A copy, not a view: arrays from Ray's object store are
    read-only, and torch.from_numpy would warn about (and share) them."""
    return torch.tensor(array, device=device)


def _optimizer(cfg: Config, net: torch.nn.Module) -> torch.optim.Optimizer:
    params = net.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)


def _schedule(cfg: Config, opt: torch.optim.Optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch; the run's length is cfg.epochs."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total + 1)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def train(
    cfg: Config,
    split: Split,
    epochs: int | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: str | torch.device | None = None,
) -> Trainer:
    """Train `cfg` for `epochs` (default cfg.epochs), calling `on_epoch` after each; returns the Trainer."""
    trainer = Trainer(cfg, split, device)
    for _ in range(epochs or cfg.epochs):
        metrics = trainer.run_epoch()
        if on_epoch:
            on_epoch(metrics)
    return trainer
