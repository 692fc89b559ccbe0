"""Training throughput of the seed network, measured side by side in one run (not a test).

  (a) pure compute: Trainer.train_step (forward, backward, optimizer, schedule) on ready-made
      batches already on the device: the ceiling for (b);
  (b) this project's training epoch: Trainer.run_epoch (permutation, on-device augmentation in
      chunks, batches sliced from them), on CUDA with its captured step (a CUDA graph) and, for
      comparison, with the plain step (b plain);
  (c) the common reference: torchvision.transforms.v2 RandomAffine + RandomHorizontalFlip per sample
      in a torch DataLoader with 2 workers, feeding the plain training step;
  (d) N trials packed on one device, as Ray runs them: N separate processes, each a Trainer running
      epochs for a fixed time after a shared start; the sum of their images/s.
  (e) a trial's start: from the moment a trial begins in a fresh process until its first training
      step has run, for the seed network and a network of the `full` space near 1M parameters, on
      the standard budget's data (54,000 training images); the first trial of the process (its
      data goes to the device, CUDA starts), then a second of the same network, which finds the
      data there (search.trainable keeps it between a reused actor's trials). Split into the data's
      copy, building the trainer (network, optimizer) and the first step (on CUDA: cuDNN's kernel
      choice and the step's capture as a CUDA graph).

On CUDA every time is taken with CUDA events after warm-up (the first epoch, which includes the
graph capture and cuDNN's kernel choice, is timed separately and reported as a one-off cost).
Prints images/s, the fraction of the device's peak bf16 arithmetic that (b) reaches (from the
network's FLOP count) and the ratios against the targets.

    python benchmarks/throughput.py [--images 16384] [--batch-size 128] [--device auto|cpu|cuda]
                                    [--packed 4] [--only a,b,c,d,e] [--compile]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from model import PRESETS, Trainer, build, data, to_input

# b/a: what the data pipeline (permutation, augmentation, slicing) costs; b/c: the gain over the
# usual per-sample pipeline; d: four trials sharing one GPU, in images/s over all four.
TARGETS = {"cpu": {"b/a": 0.9, "b/c": 1.1}, "cuda": {"b/a": 0.9, "b/c": 10.0, "b": 100_000, "d": 250_000}}
# Dense bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; the first name contained in the
# device's name wins, so the more specific names come first.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}


class Clock:
    """Seconds of device time between start() and stop(): CUDA events on CUDA, perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self._begin, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            return self._begin.elapsed_time(self._end) / 1000
        return time.perf_counter() - self._t0


def _empty_val(images: np.ndarray, labels: np.ndarray) -> data.Split:
    return data.Split(images, labels, images[:0], labels[:0])  # no validation: only training is timed


def pure_compute(cfg, images, labels, device, warmup: int, cuda_graph: bool | None) -> float:
    """(a) The trainer's own step on batches prepared beforehand on the device."""
    trainer = Trainer(cfg, _empty_val(images, labels), device, cuda_graph)
    bs = cfg.batch_size
    x_all, y_all = to_input(trainer.train_x), trainer.train_y
    batches = [(x_all[i * bs : (i + 1) * bs], y_all[i * bs : (i + 1) * bs]) for i in range(trainer.steps_per_epoch)]
    for x, y in batches[:warmup]:
        trainer.train_step(x, y)
    clock = Clock(device)
    clock.start()
    for x, y in batches:
        trainer.train_step(x, y)
    return len(batches) * bs / clock.stop()


def trainer_epoch(cfg, images, labels, device, cuda_graph: bool | None) -> tuple[float, float]:
    """(b) Trainer.run_epoch: (images/s of a warm epoch, extra seconds of the first epoch)."""
    trainer = Trainer(cfg, _empty_val(images, labels), device, cuda_graph)
    clock = Clock(device)
    clock.start()
    trainer.run_epoch()  # the first epoch: graph capture, cuDNN's kernel choice
    first = clock.stop()
    clock.start()
    trainer.run_epoch()
    warm = clock.stop()
    return trainer.steps_per_epoch * cfg.batch_size / warm, first - warm


class _PerSample(torch.utils.data.Dataset):
    """uint8 images through torchvision v2 transforms one at a time, as a usual training script does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision.transforms import v2

        self.images = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 28, 28) uint8
        self.labels = torch.from_numpy(labels)
        self.transform = v2.Compose(
            [
                v2.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=10, scale=(0.9, 1.1)),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def dataloader_reference(cfg, images, labels, device, warmup: int, workers: int) -> float:
    """(c) Per-sample torchvision augmentation in DataLoader workers feeding the plain training step.
    The first `warmup` batches (worker start-up included) are not timed."""
    bs = cfg.batch_size
    n_warm = warmup * bs
    # Warm-up batches first, then the timed images: the same images as (a) and (b).
    ds = _PerSample(np.concatenate([images[:n_warm], images]), np.concatenate([labels[:n_warm], labels]))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=bs, shuffle=False, drop_last=True, num_workers=workers, pin_memory=device.type == "cuda"
    )
    trainer = Trainer(cfg, _empty_val(images[:bs], labels[:bs]), device, cuda_graph=False)
    clock, seen = Clock(device), 0
    for step, (x, y) in enumerate(loader):
        if step == warmup:
            clock.start()
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        trainer.train_step(x, y.to(device, non_blocking=True))
        if step >= warmup:
            seen += len(y)
    return seen / clock.stop()


def _packed_worker(cfg, images, labels, device: str, seconds: float, barrier, results) -> None:
    trainer = Trainer(cfg, _empty_val(images, labels), device)
    trainer.run_epoch()  # warm-up: capture, cuDNN, allocator
    barrier.wait()
    start, epochs = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        trainer.run_epoch()  # ends with a host sync (.item()), so the clock below sees finished work
        epochs += 1
    results.put(epochs * trainer.steps_per_epoch * cfg.batch_size / (time.monotonic() - start))


def packed(cfg, images, labels, device, n: int, seconds: float) -> float:
    """(d) Sum of images/s of n trial processes training at once on the same device."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_packed_worker, args=(cfg, images, labels, str(device), seconds, barrier, results))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    rates = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def _trial_starts(cfgs: dict, split, device: str, trials: int, results) -> None:
    """(e) in a fresh process: each config's trials one after another, as a reused actor runs them."""
    from model.trainer import DeviceSplit

    dev, kept = torch.device(device), None
    for name, cfg in cfgs.items():
        for trial in range(1, trials + 1):
            start = time.perf_counter()
            if kept is None:
                kept = DeviceSplit.of(split, dev)
            copied = time.perf_counter()
            trainer = Trainer(cfg, kept, dev)
            built = time.perf_counter()
            x, y = next(trainer.batches())
            trainer.train_step(x, y)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            stepped = time.perf_counter()
            results.put({"net": name, "params": trainer.params, "trial": trial, "data": copied - start,
                         "build": built - copied, "step": stepped - built, "total": stepped - start})


def trial_start(cfgs: dict, split, device, trials: int = 2) -> list[dict]:
    """(e) One fresh process per network; its first and second trial's seconds to the first step."""
    ctx, rows = mp.get_context("spawn"), []
    for name, cfg in cfgs.items():
        results = ctx.Queue()
        proc = ctx.Process(target=_trial_starts, args=({name: cfg}, split, str(device), trials, results))
        proc.start()
        rows += [results.get(timeout=600) for _ in range(trials)]
        proc.join()
    return rows


def full_space_network(near: int = 1_000_000, seed: int = 0):
    """A network of the `full` space with between 90% and 100% of `near` parameters, the first one
    drawn with this seed (30 epochs, as the standard budget trains)."""
    import spaces
    from model.config import Config, preset
    from model.net import parameters_of
    from search.settings import draw_config

    space = spaces.get("full")
    param_space = {**preset(space.PRESET).to_flat(), "epochs": 30, **space.PARAMS}
    rng = np.random.default_rng(seed)
    for _ in range(5000):
        cfg = Config.from_flat(draw_config(param_space, rng))
        if 0.9 * near <= parameters_of(cfg) <= near:
            return cfg
    raise ValueError(f"no network of the full space with 90-100% of {near:,} parameters in 5,000 draws")


def compiled_compute(cfg, images, labels, device, warmup: int) -> tuple[float, float]:
    """torch.compile (inductor, CUDA graphs: mode="reduce-overhead") on the plain step, for the
    record: (images/s on ready batches, seconds the first steps spent compiling)."""
    torch.manual_seed(cfg.seed)
    net = torch.compile(build(cfg).to(device, memory_format=torch.channels_last), mode="reduce-overhead")
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    bs = cfg.batch_size
    x_all, y_all = to_input(torch.from_numpy(images).to(device)), torch.from_numpy(labels).to(device)
    batches = [(x_all[i * bs : (i + 1) * bs], y_all[i * bs : (i + 1) * bs]) for i in range(len(images) // bs)]

    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for x, y in batches[: max(warmup, 3)]:
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    compile_seconds = time.perf_counter() - t0
    clock = Clock(device)
    clock.start()
    for x, y in batches:
        step(x, y)
    return len(batches) * bs / clock.stop(), compile_seconds


def training_flops_per_image(cfg) -> float:
    """Forward + backward FLOPs per training image, counted by PyTorch on one CPU batch."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build(cfg).train()
    x = torch.rand(8, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    return counter.get_total_flops() / 8


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _processor(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096, help="training images per measurement (default 4096)")
    parser.add_argument("--batch-size", type=int, default=128, help="default 128")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (a, b, c), interleaved; the best of each is kept")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before (a) and (c)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for (c) (default 2)")
    parser.add_argument("--packed", type=int, default=4, help="trials (processes) sharing the device for (d)")
    parser.add_argument("--packed-seconds", type=float, default=6.0, help="how long (d)'s trials train at once")
    parser.add_argument("--only", default=None, help="comma-separated subset of a,b,c,d (default: a,b,c, and d on CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(mode='reduce-overhead')")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not known")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: as model.data finds it)")
    args = parser.parse_args()

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.images < 2 * args.batch_size:
        parser.error("--images must be at least twice --batch-size")
    cuda = device.type == "cuda"
    wanted = set((args.only or ("a,b,c,d,e" if cuda else "a,b,c,e")).split(","))
    if not wanted <= {"a", "b", "c", "d", "e"}:
        parser.error("--only takes a comma-separated subset of a,b,c,d,e")
    cfg = replace(PRESETS["seed"], batch_size=args.batch_size, strength=1.0)

    all_images, all_labels = data.load("train", args.data_dir)
    idx = data.stratified_sample(all_labels, min(args.images, len(all_labels)), seed=0)
    images, labels = all_images[idx], all_labels[idx]
    flops = training_flops_per_image(cfg)

    print(
        f"seed network ({sum(p.numel() for p in build(cfg).parameters()):,} parameters, {flops / 1e6:.0f} MFLOP per "
        f"training image), augmentation strength {cfg.strength:g}, batch {cfg.batch_size}, {len(images):,} images "
        f"per measurement, best of {args.repeats}"
    )
    print(
        f"device {device.type}: {_processor(device)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}"
    )
    results: dict[str, list[float]] = {k: [] for k in ("a", "b", "b plain", "c", "first epoch extra s")}
    for _ in range(args.repeats):
        if "a" in wanted:
            results["a"].append(pure_compute(cfg, images, labels, device, args.warmup, None))
        if "b" in wanted:
            rate, extra = trainer_epoch(cfg, images, labels, device, None)
            results["b"].append(rate)
            results["first epoch extra s"].append(extra)
            if cuda:
                results["b plain"].append(trainer_epoch(cfg, images, labels, device, False)[0])
        if "c" in wanted:
            results["c"].append(dataloader_reference(cfg, images, labels, device, args.warmup, args.workers))
    best = {k: max(v) for k, v in results.items() if v}
    if "first epoch extra s" in best:
        best["first epoch extra s"] = statistics.median(results["first epoch extra s"])

    def spread(v: list[float]) -> str:
        return f"(runs: {', '.join(f'{x:,.0f}' for x in v)}; median {statistics.median(v):,.0f})"

    graph = cuda and Trainer(cfg, _empty_val(images, labels), device).cuda_graph
    step = "captured CUDA-graph step" if graph else "plain step"
    labels_ = {
        "a": f"(a) pure compute, ready batches, {step}",
        "b": f"(b) Trainer.run_epoch, {step}",
        "b plain": "(b plain) Trainer.run_epoch, plain step",
        "c": f"(c) torchvision v2 per sample, DataLoader {args.workers} workers",
    }
    for key, label in labels_.items():
        if key in best:
            print(f"{label:<58} {best[key]:>10,.0f} img/s  {spread(results[key])}")
    if cuda and "first epoch extra s" in best:
        print(f"first epoch's one-off cost (capture, cuDNN autotune): {best['first epoch extra s']:.2f} s (median)")
    if cuda and "b" in best:
        peak = peak_tflops(device, args.peak_tflops)
        achieved = best["b"] * flops / 1e12
        share = f"{achieved / peak:.1%} of the {peak:g} TFLOP/s bf16 peak" if peak else "peak unknown (--peak-tflops)"
        print(f"(b) does {achieved:.1f} TFLOP/s: {share}")
    if args.compile:
        rate, seconds = compiled_compute(cfg, images, labels, device, args.warmup)
        print(f"torch.compile(mode='reduce-overhead'), ready batches: {rate:>10,.0f} img/s after {seconds:.1f} s of compiling")
    if "d" in wanted:
        total = packed(cfg, images, labels, device, args.packed, args.packed_seconds)
        best["d"] = total
        print(f"(d) {args.packed} trials packed on one {device.type} device, separate processes: {total:>10,.0f} img/s in all")

    if "e" in wanted:
        split = data.split(all_images, all_labels, 6000, None, seed=data.SPLIT_SEED)  # the standard budget's data
        nets = {"seed": replace(PRESETS["seed"], epochs=30), "full ~1M": full_space_network()}
        print(f"(e) a trial's start to its first training step, {len(split.train_images):,} training images, seconds:")
        print(f"    {'network':<10} {'params':>9} {'trial':>5} {'data':>6} {'build':>6} {'step':>6} {'total':>6}")
        for row in trial_start(nets, split, device):
            print(f"    {row['net']:<10} {row['params']:>9,} {row['trial']:>5} {row['data']:>6.3f} {row['build']:>6.3f} "
                  f"{row['step']:>6.3f} {row['total']:>6.3f}")

    targets = TARGETS[device.type]
    ratios = {}
    if "a" in best and "b" in best:
        ratios["b/a"] = best["b"] / best["a"]
    if "b" in best and "c" in best:
        ratios["b/c"] = best["b"] / best["c"]
    for name, value in ratios.items():
        print(f"{name} = {value:.2f}   target ({device.type}) >= {targets[name]:g}: {'met' if value >= targets[name] else 'MISSED'}")
    for name in ("b", "d"):
        if name in targets and name in best and not (name == "d" and args.packed != 4):
            met = "met" if best[name] >= targets[name] else "MISSED"
            print(f"{name} = {best[name]:,.0f} img/s   target ({device.type}) >= {targets[name]:,}: {met}")


if __name__ == "__main__":
    main()
