"""An exponential moving average of a network's weights, bias-corrected as Adam's moments, with
BatchNorm statistics of its own.

    average_t = (1 - d) * sum_{i=1..t} d^(t-i) * w_i  /  (1 - d^t),   d = 1 - 1 / horizon

w_i are the weights after optimizer step i and `horizon` the average's time constant in steps
(Config.ema_epochs times the steps per epoch). Without the correction the average starts at the
initial weights and needs ~horizon steps to forget them, which an early ASHA rung would judge; with
it, the average holds trained weights only from the first step on.

BatchNorm's running statistics are recomputed for the averaged weights, as
torch.optim.swa_utils.update_bn does, in one batch: a forward pass over images the caller gives
(the trainer: a fixed sample of unaugmented training images on the device), BatchNorm layers taking
the batch's plain mean and variance, everything else as evaluated (dropout off). Not averaged with
the weights (AveragedModel(use_buffers=True)): running statistics start at mean 0, variance 1 and
are an uncorrected average themselves, so their average is far from the averaged weights' own early
in a run, where ASHA's first rungs judge (measured in docs/model.md).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, net: nn.Module, horizon: float) -> None:
        """horizon: the time constant in optimizer steps, 1/(1 - decay); 1 = the last weights only."""
        if not horizon >= 1:
            raise ValueError(f"horizon={horizon}: must be at least 1 optimizer step")
        self.decay = 1 - 1 / horizon
        self.steps = 0
        self.sum = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in net.parameters()]
        self._net = copy.deepcopy(net)  # holds the corrected average whenever it is asked for
        self._norms = [m for m in self._net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for norm in self._norms:
            norm.momentum = None  # the plain mean over the recomputing pass, not a running average

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """After each optimizer step: sum <- d * sum + (1 - d) * w, for all tensors in one kernel."""
        torch._foreach_lerp_(self.sum, [p.detach() for p in net.parameters()], 1 - self.decay)
        self.steps += 1

    @torch.no_grad()
    def averaged(self, net: nn.Module, images: torch.Tensor) -> nn.Module:
        """A network with the averaged weights and BatchNorm statistics computed for them on `images`
        (the network's input, one batch), in `net`'s train/eval mode. Before the first step: `net`'s
        own weights and statistics."""
        correction = 1 - self.decay**self.steps
        for target, total, live in zip(self._net.parameters(), self.sum, net.parameters()):
            target.copy_(total / correction if self.steps else live)
        for target, live in zip(self._net.buffers(), net.buffers()):
            target.copy_(live)
        if self.steps and self._norms:
            self._net.eval()
            for norm in self._norms:
                norm.reset_running_stats()
                norm.train()
            self._net(images)
        return self._net.train(net.training)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "sum": [t.detach().clone() for t in self.sum]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for total, saved in zip(self.sum, state["sum"]):
                total.copy_(saved)
        self.steps = int(state["steps"])
