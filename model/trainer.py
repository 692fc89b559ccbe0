"""Training and evaluation of one config, an epoch at a time.

The training images go to the device once, as uint8. Each epoch draws a permutation on the
device, augments the permuted images there in a few large chunks (per-sample parameters, a dozen
kernels per chunk), and slices its batches out of them. No DataLoader: on a GPU a CPU pipeline
caps throughput far below what the network can do.

On CUDA the step is launch-bound, not arithmetic-bound (a 28x28 CNN at batch 128 runs ~100
small kernels), so forward and backward are captured once as a CUDA graph and replayed: one
launch per step instead of ~100. The optimizer (fused) and the schedule stay outside the graph,
so the learning rate and checkpoints behave exactly as in the plain path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.augment import Augmentation, augment
from model.config import Config
from model.data import Split
from model.ema import WeightAverage
from model.net import build, count_parameters, to_input
from model.step import CapturedStep

EVAL_BATCH = 2048  # images per evaluation step: inference needs no activations kept for backward
# Images augmented per call: large enough that the augmentation's kernels cost nothing per step,
# small enough that a chunk (4 bytes x 784 per image: 25 MB) never matters for memory.
AUGMENT_CHUNK = 8192
# A CUDA graph costs a few warm-up steps and a capture, about 0.02 s, and saves about 2.9 ms per step
# of the seed network at batch 128 (H200, benchmarks/throughput.py: 144k vs 34k img/s): it pays for
# itself after ~7 steps. Below this many steps in the whole run the plain step is kept.
GRAPH_MIN_STEPS = 20
# Unaugmented training images on which the weight average's BatchNorm statistics are computed at each
# evaluation (model/ema.py): one batch, one forward pass; per-channel statistics over 2,048 images
# (times the map's pixels) vary far less than the average's weights do.
BN_IMAGES = 2048


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


@dataclass(frozen=True)
class DeviceSplit:
    """A Split's arrays as tensors on one device (uint8 images, int64 labels). Trainers only read
    them, so one copy serves every trainer on that device: a process that trains one trial after
    another (a reused Ray actor) pays the copy to the device once."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    @classmethod
    def of(cls, split: Split, device: str | torch.device) -> DeviceSplit:
        device = torch.device(device)
        arrays = (split.train_images, split.train_labels, split.val_images, split.val_labels)
        return cls(*(on_device(a, device) for a in arrays))

    @property
    def device(self) -> torch.device:
        return self.train_x.device


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    """One config's network, optimizer and schedule over one Split, an epoch at a time."""

    def __init__(
        self, cfg: Config, split: Split | DeviceSplit, device: str | torch.device | None = None,
        cuda_graph: bool | None = None,
    ) -> None:
        """split: the arrays, or a DeviceSplit already on `device` (shared, never written).
        cuda_graph: None chooses (CUDA and at least GRAPH_MIN_STEPS steps in the run), True forces
        the captured step (CUDA only), False the plain one."""
        self.cfg = cfg
        self.device = torch.device(device) if device else default_device()
        self.aug = Augmentation.from_config(cfg)
        torch.manual_seed(cfg.seed)
        self.net = build(cfg).to(self.device, memory_format=torch.channels_last)
        self.params = count_parameters(self.net)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        data = split if isinstance(split, DeviceSplit) else DeviceSplit.of(split, self.device)
        if data.device != torch.empty(0, device=self.device).device:  # "cuda" is cuda:0 once placed
            raise ValueError(f"the data is on {data.device}, the trainer on {self.device}")
        self.train_x, self.train_y, self.val_x, self.val_y = data.train_x, data.train_y, data.val_x, data.val_y
        self.steps_per_epoch = len(self.train_x) // cfg.batch_size  # the last partial batch is dropped
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(self.train_x)} training images")
        cuda = self.device.type == "cuda"
        if cuda_graph and not cuda:
            raise ValueError(f"cuda_graph=True needs a CUDA device, not {self.device}")
        self.cuda_graph = cuda and (cuda_graph if cuda_graph is not None else self.steps_per_epoch * cfg.epochs >= GRAPH_MIN_STEPS)
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
        self.optimizer = _optimizer(cfg, self.net, fused=cuda)
        self.average = None
        if cfg.ema_epochs:
            # The horizon in steps, from epochs; under one step (a tiny subset at a large batch) the last weights.
            self.average = WeightAverage(self.net, max(1.0, cfg.ema_epochs * self.steps_per_epoch))
            # A fixed random sample, from a generator of its own: the training draws stay as they are.
            pick = torch.randperm(len(self.train_x), generator=torch.Generator().manual_seed(cfg.seed))[:BN_IMAGES]
            self.bn_images = self.train_x[pick.to(self.device)]
        self.schedule = _schedule(cfg, self.optimizer, self.steps_per_epoch)
        self.epoch = 0
        # bf16 autocast on CUDA only: the CPU has no fast bf16 path for these convs here. No cast
        # cache: each step is one autocast region anyway, and a cache must not outlive a graph capture.
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda, cache_enabled=False)
        # Running sums of the epoch's training loss and hits, on the device: no host sync per step.
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._captured: CapturedStep | None = None

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's augmented training batches: slices of chunks augmented at once, in the order
        of a permutation; every draw comes from the trainer's generator."""
        bs = self.cfg.batch_size
        used = self.steps_per_epoch * bs
        order = torch.randperm(len(self.train_x), device=self.device, generator=self.gen)[:used]
        chunk = max(1, AUGMENT_CHUNK // bs) * bs  # whole batches per chunk
        for start in range(0, used, chunk):
            idx = order[start : start + chunk]
            images, labels = augment(to_input(self.train_x[idx]), self.aug, self.gen), self.train_y[idx]
            for i in range(0, len(idx), bs):
                yield images[i : i + bs], labels[i : i + bs]

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimisation step on a ready batch; its loss and hits add to loss_sum and correct."""
        if self.cuda_graph:
            self._capture()
            self._captured(x, y)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._forward_backward(x, y)
        self.optimizer.step()
        self.schedule.step()
        if self.average:
            self.average.update(self.net)

    def _capture(self) -> None:
        if self._captured is None:
            bs = self.cfg.batch_size
            self._captured = CapturedStep(self._forward_backward, to_input(self.train_x[:bs]), self.train_y[:bs], self.net)

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with self.autocast:
            logits = self.net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        loss.backward()
        self.loss_sum.add_(loss.detach() * len(y))
        self.correct.add_((logits.argmax(1) == y).sum())

    def run_epoch(self) -> EpochMetrics:
        start = time.perf_counter()
        self.net.train()
        if self.cuda_graph:
            self._capture()  # before the reseed below: the capture's warm-up steps draw dropout masks
        # Dropout draws from the global RNG, which a checkpoint does not hold: reseed it from
        # self.gen (which the checkpoint does hold) so that a resumed run repeats the same masks.
        torch.manual_seed(int(torch.randint(2**62, (1,), device=self.device, generator=self.gen).item()))
        self.loss_sum.zero_()
        self.correct.zero_()
        for x, y in self.batches():
            self.train_step(x, y)
        seen = self.steps_per_epoch * self.cfg.batch_size
        # .item() waits for the device, so on CUDA the training time covers the queued kernels too.
        train_loss, train_acc = self.loss_sum.item() / seen, self.correct.item() / seen
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

    def eval_net(self) -> torch.nn.Module:
        """The network that validation, test and export use: the weight average (with its own
        BatchNorm statistics) when cfg.ema_epochs is on, else the trained network itself. In eval mode."""
        self.net.eval()
        if not self.average:
            return self.net
        with self.autocast:  # the BatchNorm pass sees what evaluation sees
            return self.average.averaged(self.net, to_input(self.bn_images))

    def logits(self, images_u8: torch.Tensor) -> torch.Tensor:
        """float32 logits for uint8 images (N, 28, 28), in large batches, eval mode."""
        net = self.eval_net()
        with torch.inference_mode():
            out = []
            for i in range(0, len(images_u8), EVAL_BATCH):
                with self.autocast:
                    out.append(net(to_input(images_u8[i : i + EVAL_BATCH].to(self.device))).float())
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
            **({"average": self.average.state_dict()} if self.average else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        if Config.from_flat(state["config"]) != self.cfg:
            raise ValueError("checkpoint was written for a different config")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.gen.set_state(state["generator"].cpu())
        if self.average:
            self.average.load_state_dict(state["average"])
        self.epoch = state["epoch"]


def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of logits against labels on the same device. The accuracy is
    hits / images in Python's float64: a float32 mean would make 736 of 1,000 0.7360000014305115,
    which no `val_acc = 0.736` finds."""
    hits = int((logits.argmax(1) == labels).sum().item())
    return F.cross_entropy(logits, labels).item(), hits / len(labels)


def on_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A copy of `array` on `device`. A copy, not a view: arrays from Ray's object store are
    read-only, and torch.from_numpy would warn about (and share) them."""
    return torch.tensor(array, device=device)


def _optimizer(cfg: Config, net: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    """fused: one kernel for all parameters (CUDA), instead of a few per parameter tensor. With
    cfg.bn_bias_lr != 1 the BatchNorm biases are a second parameter group (Config.bn_bias_lr); at 1
    there is one group, as in checkpoints written before that key existed."""
    params, fused_arg, lr = _parameter_groups(cfg, net), fused or None, cfg.step_lr()  # fused None: PyTorch's default (foreach)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, fused=fused_arg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=fused_arg)
    return torch.optim.SGD(
        params, lr=lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay, fused=fused_arg
    )


def _parameter_groups(cfg: Config, net: torch.nn.Module) -> list[dict]:
    if cfg.bn_bias_lr == 1:
        return [{"params": list(net.parameters())}]
    biases = {id(m.bias) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    return [
        {"params": [p for p in net.parameters() if id(p) not in biases]},
        {"params": [p for p in net.parameters() if id(p) in biases], "lr": cfg.step_lr() * cfg.bn_bias_lr,
         "weight_decay": cfg.weight_decay / cfg.bn_bias_lr},
    ]


def _schedule(cfg: Config, opt: torch.optim.Optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch; the run's length is cfg.epochs. The learning rate only: momentum and
    Adam's beta1 stay as the optimizer was built (see Config.momentum), one-cycle included."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        peaks = [group["lr"] for group in opt.param_groups]  # each group's own (Config.bn_bias_lr)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peaks, total_steps=total + 1, cycle_momentum=False)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def train(
    cfg: Config,
    split: Split,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: str | torch.device | None = None,
    cuda_graph: bool | None = None,
) -> Trainer:
    """Train `cfg` for cfg.epochs (also its schedule's length), calling `on_epoch` after each; returns the Trainer."""
    trainer = Trainer(cfg, split, device, cuda_graph)
    for _ in range(cfg.epochs):
        metrics = trainer.run_epoch()
        if on_epoch:
            on_epoch(metrics)
    return trainer
