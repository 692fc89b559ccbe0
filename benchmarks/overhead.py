"""What Tune costs: 16 one-epoch trials through the real search engine vs the same trainings back to back.

Scheduling efficiency = sum of the trials' own epoch seconds / (concurrency x wall seconds of
Tuner.fit). 1.0 means the trial slots never sat idle: no time lost to actor start-up, checkpoints,
result handling or the searcher. Target >= 0.85 on the 2-core CPU machine. The back-to-back run
(one process, no Ray) gives the same trainings' seconds without any framework, for reference.

    python benchmarks/overhead.py [--trials 16] [--subset 3000] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from model import data as fmnist  # noqa: E402
from model.config import Config  # noqa: E402
from model.trainer import Trainer  # noqa: E402
from results.collect import collect  # noqa: E402
from results.load import load  # noqa: E402
from results.schema import CONFIG_COLUMNS  # noqa: E402
from search import engine  # noqa: E402
from search.run import parse  # noqa: E402
from search.runtime.ray_session import ray_session  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--subset", type=int, default=3000, help="training images per trial")
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()

    storage = tempfile.mkdtemp(prefix="overhead-")
    settings = parse([
        "space=augmentation", f"trials={args.trials}", "max_epochs=1", "grace=1", f"subset={args.subset}",
        "val_size=1000", f"concurrency={args.concurrency}", f"storage={storage}", "name=overhead",
    ])
    images, labels = fmnist.load("train")
    split = fmnist.split(images, labels, settings.val_size, settings.subset, seed=0)
    engine.quiet()
    with ray_session(num_cpus=os.cpu_count()):
        tuner = engine.create_tuner(settings, split)
        start = time.perf_counter()
        tuner.fit()
        wall = time.perf_counter() - start
    collect(settings.experiment)
    trials = load(settings.experiment).trials
    busy = trials["seconds"].sum()

    start = time.perf_counter()
    for row in trials.itertuples():
        Trainer(Config.from_flat({c: getattr(row, c) for c in CONFIG_COLUMNS}), split).run_epoch()
    back_to_back = time.perf_counter() - start

    print(f"{len(trials)} one-epoch trials on {settings.subset:,} images, concurrency {settings.concurrency}, "
          f"{os.cpu_count()} CPUs")
    print(f"  Tune wall (Tuner.fit):        {wall:7.1f} s")
    print(f"  sum of trials' epoch seconds: {busy:7.1f} s")
    print(f"  back to back, one process:    {back_to_back:7.1f} s")
    efficiency = busy / (settings.concurrency * wall)
    print(f"scheduling efficiency = {busy:.1f} / ({settings.concurrency} x {wall:.1f}) = {efficiency:.3f}  "
          f"(target >= 0.85: {'met' if efficiency >= 0.85 else 'MISSED'})")
    print(f"back-to-back seconds / Tune wall = {back_to_back / wall:.2f}  (the speed-up Tune's concurrency gives here)")


if __name__ == "__main__":
    main()
