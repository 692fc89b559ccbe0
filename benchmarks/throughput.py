"""Training throughput of the seed network, three ways, in one run (not a test).

  (a) pure compute: forward + backward + optimizer step on ready-made batches already on the device;
  (b) this project's training epoch: model.trainer.Trainer.run_epoch, with its on-device batched
      augmentation (EpochMetrics.images_per_second, which counts training time only);
  (c) the common reference: torchvision.transforms.v2 RandomAffine + RandomHorizontalFlip per sample
      in a torch DataLoader with 2 workers, feeding the same network's training step.

Prints images/second for each and the ratios b/a and b/c against the targets.

    python benchmarks/throughput.py [--images 4096] [--batch-size 128] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from model import PRESETS, Trainer, build, data
from model.trainer import _to_input

TARGETS = {"cpu": {"b/a": 0.9, "b/c": 1.1}, "cuda": {"b/a": 0.8, "b/c": 10.0}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    # As the Trainer: bf16 autocast on CUDA only.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _network(cfg, device: torch.device):
    torch.manual_seed(cfg.seed)
    net = build(cfg).to(device, memory_format=torch.channels_last)  # the Trainer's layout
    net.train()
    return net, torch.optim.Adam(net.parameters(), lr=cfg.lr)


def _step(net, opt, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    """The Trainer's training step, without augmentation and bookkeeping."""
    with _autocast(device):
        loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def pure_compute(cfg, images: np.ndarray, labels: np.ndarray, device: torch.device, warmup: int) -> float:
    """(a) Batches prepared beforehand on the device; only the training steps are timed."""
    bs = cfg.batch_size
    steps = len(images) // bs
    x_all = _to_input(torch.from_numpy(images).to(device))
    y_all = torch.from_numpy(labels).to(device)
    batches = [(x_all[i * bs : (i + 1) * bs], y_all[i * bs : (i + 1) * bs]) for i in range(steps)]
    net, opt = _network(cfg, device)
    for x, y in batches[:warmup]:
        _step(net, opt, x, y, device)
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        _step(net, opt, x, y, device)
    _sync(device)
    return steps * bs / (time.perf_counter() - start)


def trainer_epoch(cfg, images: np.ndarray, labels: np.ndarray, device: torch.device, warmup: int) -> float:
    """(b) One Trainer.run_epoch over the images, no validation set (so none is timed)."""
    empty = images[:0], labels[:0]
    if warmup:
        n = warmup * cfg.batch_size
        Trainer(cfg, data.Split(images[:n], labels[:n], *empty), device).run_epoch()
    trainer = Trainer(cfg, data.Split(images, labels, *empty), device)
    return trainer.run_epoch().images_per_second


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


def dataloader_reference(
    cfg, images: np.ndarray, labels: np.ndarray, device: torch.device, warmup: int, workers: int
) -> float:
    """(c) Per-sample torchvision augmentation in DataLoader workers feeding the same training step.
    The first `warmup` batches (worker start-up included) are not timed."""
    bs = cfg.batch_size
    n_warm = warmup * bs
    # Warm-up batches first, then the timed images: the same images as (a) and (b).
    ds = _PerSample(np.concatenate([images[:n_warm], images]), np.concatenate([labels[:n_warm], labels]))
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=bs,
        shuffle=False,  # the images are already a random stratified subset; order does not change cost
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    net, opt = _network(cfg, device)
    seen = 0
    start = None
    for step, (x, y) in enumerate(loader):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        _step(net, opt, x, y.to(device, non_blocking=True), device)
        if step >= warmup:
            seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - start)


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
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before each measurement")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for (c) (default 2)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: as model.data finds it)")
    args = parser.parse_args()

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.images < args.batch_size:
        parser.error("--images must be at least --batch-size")
    cfg = replace(PRESETS["seed"], batch_size=args.batch_size, strength=1.0)

    all_images, all_labels = data.load("train", args.data_dir)
    n = args.images + args.warmup * args.batch_size
    idx = data.stratified_sample(all_labels, min(n, len(all_labels)), seed=0)
    images, labels = all_images[idx][: args.images], all_labels[idx][: args.images]

    print(
        f"seed network ({sum(p.numel() for p in build(cfg).parameters()):,} parameters), augmentation strength "
        f"{cfg.strength:g}, batch {cfg.batch_size}, {len(images):,} images per measurement, best of {args.repeats}"
    )
    print(
        f"device {device.type}: {_processor(device)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}"
    )
    results: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(args.repeats):
        results["a"].append(pure_compute(cfg, images, labels, device, args.warmup))
        results["b"].append(trainer_epoch(cfg, images, labels, device, args.warmup))
        results["c"].append(dataloader_reference(cfg, images, labels, device, args.warmup, args.workers))
    best = {k: max(v) for k, v in results.items()}

    def spread(v: list[float]) -> str:
        return f"(runs: {', '.join(f'{x:,.0f}' for x in v)}; median {statistics.median(v):,.0f})"

    print(f"(a) pure compute, ready batches on the device       {best['a']:>9,.0f} img/s  {spread(results['a'])}")
    print(f"(b) Trainer.run_epoch, on-device augmentation        {best['b']:>9,.0f} img/s  {spread(results['b'])}")
    print(
        f"(c) torchvision v2 per sample, DataLoader {args.workers} workers  {best['c']:>9,.0f} img/s  "
        f"{spread(results['c'])}"
    )
    targets = TARGETS[device.type]
    for name, value in (("b/a", best["b"] / best["a"]), ("b/c", best["b"] / best["c"])):
        met = "met" if value >= targets[name] else "MISSED"
        print(f"{name} = {value:.2f}   target ({device.type}) >= {targets[name]:g}: {met}")


if __name__ == "__main__":
    main()
