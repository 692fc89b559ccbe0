"""An exponential moving average of a network's weights, bias-corrected as Adam's moments.

    average_t = (1 - d) * sum_{i=1..t} d^(t-i) * w_i  /  (1 - d^t)

w_i are the weights after optimizer step i and d the decay per step. Without the correction the
average starts at the initial weights and needs ~1/(1-d) steps to forget them, which an early ASHA
rung would judge; with it, the average holds trained weights only from the first step on.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay={decay}: must lie in (0, 1)")
        self.decay = decay
        self.steps = 0
        self.sum = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in net.parameters()]
        self._net = copy.deepcopy(net)  # holds the corrected average whenever it is asked for

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """After each optimizer step: sum <- d * sum + (1 - d) * w, for all tensors in one kernel."""
        torch._foreach_lerp_(self.sum, [p.detach() for p in net.parameters()], 1 - self.decay)
        self.steps += 1

    @torch.no_grad()
    def averaged(self, net: nn.Module) -> nn.Module:
        """A network with the averaged weights and `net`'s buffers (its BatchNorm statistics), in
        `net`'s train/eval mode. Before the first step: `net`'s weights."""
        correction = 1 - self.decay**self.steps
        for target, total, live in zip(self._net.parameters(), self.sum, net.parameters()):
            target.copy_(total / correction if self.steps else live)
        for target, live in zip(self._net.buffers(), net.buffers()):
            target.copy_(live)
        return self._net.train(net.training)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "sum": [t.detach().clone() for t in self.sum]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for total, saved in zip(self.sum, state["sum"]):
                total.copy_(saved)
        self.steps = int(state["steps"])
