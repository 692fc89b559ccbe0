"""A network's inference latency on its device: milliseconds per forward pass of a batch.

What objective=val_acc,latency_ms optimises (results.pareto), measured once per trial before its
first epoch (a trial's latency depends on its architecture, not on its weights): the network in
eval mode (mirror_tta's second pass included, as evaluation and the exported model run it), under
inference_mode and the trainer's autocast, on blank images (a convolution's time does not depend
on the pixels). WARMUP passes first (cuDNN's algorithm choice,
lazy allocations), then the median of REPEATS timed passes, each synchronised on CUDA. Batch 1 is
a single request's latency; batch 256 what a served batch costs. The median: on a CPU shared with
other trials a pass may be slowed by a neighbour, and the median ignores up to two of five. Cost:
six passes a batch size, about 4 s for the seed network (786,890 parameters) on one busy CPU core
(0.6 s a pass at batch 256, 1.2 ms at batch 1); milliseconds on a GPU.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch

from model.net import to_input

BATCHES = (1, 256)  # images per forward pass: latency_ms and latency_ms_256
WARMUP, REPEATS = 1, 5


def measure(net: torch.nn.Module, device: torch.device, autocast=contextlib.nullcontext()) -> dict[str, float]:
    """{"latency_ms": ms per batch of 1, "latency_ms_256": ms per batch of 256}; `net` is left in
    the mode it was in."""
    was_training = net.training
    net.eval()
    try:
        return {_key(batch): _median_ms(net, device, batch, autocast) for batch in BATCHES}
    finally:
        net.train(was_training)


def _key(batch: int) -> str:
    return "latency_ms" if batch == 1 else f"latency_ms_{batch}"


def _median_ms(net: torch.nn.Module, device: torch.device, batch: int, autocast) -> float:
    x = to_input(torch.zeros(batch, 28, 28, dtype=torch.uint8, device=device))
    times = []
    with torch.inference_mode():
        for i in range(WARMUP + REPEATS):
            _sync(device)
            start = time.perf_counter()
            with autocast:
                net(x)
            _sync(device)
            if i >= WARMUP:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
