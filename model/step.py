"""A training step's forward and backward captured once as a CUDA graph, then replayed.

A 28x28 CNN at batch 128 is launch-bound on a modern GPU: about a hundred small kernels, each
costing more to launch from Python than to run. A CUDA graph replays all of them with one launch.
What stays outside the graph, and why:
- the optimizer step: fused (a few kernels) and free to read the learning rate the schedule sets
  each step as a plain float, exactly as the eager path does;
- the batch: copied into the graph's fixed input buffers, one copy per tensor per step.

The captured function must be free of host work (no .item(), no Python branches on tensor
values) and must write its results in place (the trainer's running loss and hit sums).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# Steps run before capture, on a side stream, as PyTorch's CUDA graph recipe asks: they let
# cuDNN pick its kernels and the caching allocator settle. Their effects are undone (see below).
WARMUP_STEPS = 3


class CapturedStep:
    """`step(x, y)` = `fn(x, y)` replayed from a CUDA graph; x and y must keep the capture's shapes.

    The gradients live in the graph's memory from capture on: the backward pass overwrites them
    at every replay, so they must never be set to None (zero_grad) afterwards.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], None], x: torch.Tensor, y: torch.Tensor, net: nn.Module) -> None:
        self.x, self.y = x.clone(), y.clone()
        # Warm-up steps run the network in training mode: BatchNorm's running statistics and its
        # batch counter move, and must be as they were before the first real step.
        saved = [b.clone() for b in net.buffers()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                net.zero_grad(set_to_none=True)
                fn(self.x, self.y)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for buffer, value in zip(net.buffers(), saved):
                buffer.copy_(value)
        net.zero_grad(set_to_none=True)  # so that the captured backward allocates (and owns) the gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            fn(self.x, self.y)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
