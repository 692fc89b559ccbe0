"""The headline: the best small CNN this service finds in ten minutes of one GPU, tested once.

Runs `python -m search.run space=full budget=standard max_params=1000000` on this machine's GPUs
(the standard budget is boxed to 8 minutes of each GPU), retrains the winner with 3 seeds on all
60,000 training images (the seeds share the GPUs, all at once), and prints and saves one table
(headline.json next to the run, and at --json as each phase ends): each phase's wall seconds (Ray's
start included), the search's efficiency (its trials' device-seconds / (GPUs x search wall)), best
validation accuracy, test accuracy mean and standard deviation with and without the mirror
average, parameters, trials completed / pruned / error / refused. NVIDIA's MPS is started for the
run unless it already runs (packed trials take turns on the GPU without it) and stopped after.

    python benchmarks/headline.py [--quick] [--storage runs] [--name headline] [--data-dir DIR] [--json PATH]

--quick: a small search (24 trials of at most 9 epochs, rungs at 1 and 3, 0.02 GPU-hours) and a
10-epoch retrain, about 3 minutes of one H100/H200. Needs a CUDA GPU: without one it says so and
exits 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

MAX_PARAMS = 1_000_000
GOAL = 0.955  # mean test accuracy of 3 seeds under MAX_PARAMS; beyond: 0.96
FULL = {"search": ["budget=standard"], "retrain": ["seeds=3"]}
QUICK = {
    "search": ["budget=standard", "trials=24", "max_epochs=9", "grace=1", "eta=3", "gpu_hours=0.02"],
    "retrain": ["seeds=3", "epochs=10"],
}
GPUS_PER_TRIAL = 0.25  # the standard budget's


def _run(args: list[str]) -> float:
    """Runs a command of this project, streaming its output; its wall seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args])
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:1])} exited {done.returncode}")
    return time.perf_counter() - start


@contextmanager
def mps():
    """NVIDIA's Multi-Process Service for the block, started (and stopped after) unless it already runs."""
    from search.runtime.devices import MPS_START, mps_running

    started = False
    if not mps_running():
        started = subprocess.run(MPS_START.split(), capture_output=True).returncode == 0
        time.sleep(1)  # the daemon makes its control pipe
        print(f"MPS {'started' if started else 'could not be started: packed trials take turns on the GPU'}", flush=True)
    try:
        yield
    finally:
        if started:
            subprocess.run(["nvidia-cuda-mps-control"], input=b"quit\n", capture_output=True)


def search_row(experiment: str, search_seconds: float, gpus: int) -> dict:
    """What the search's tables say, and its efficiency against the command's wall time."""
    import results

    exp = results.load(experiment)
    counts = exp.trials["status"].value_counts()
    trial_seconds = float(exp.trials["seconds"].sum())
    return {
        "experiment": experiment,
        "search_seconds": search_seconds,
        "search_efficiency": trial_seconds * GPUS_PER_TRIAL / (gpus * search_seconds),
        "best_val_acc": float(exp.best["val_acc"]),
        "params": int(exp.best["params"]),
        "search_gpu_minutes": search_seconds * gpus / 60,
        **{status: int(counts.get(status, 0)) for status in ("completed", "pruned", "error", "refused")},
    }


def retrain_row(experiment: str, retrain_seconds: float, gpus: int) -> dict:
    import results

    retrain = results.load(experiment).retrain
    row = {
        "retrain_seconds": retrain_seconds,
        "retrain_gpu_minutes": retrain_seconds * gpus / 60,
        "test_acc_mean": float(retrain["test_acc"].mean()),
        "test_acc_std": float(retrain["test_acc"].std(ddof=1)) if len(retrain) > 1 else float("nan"),
    }
    if "test_acc_no_mirror" in retrain:
        row["test_acc_no_mirror_mean"] = float(retrain["test_acc_no_mirror"].mean())
        row["test_acc_no_mirror_std"] = float(retrain["test_acc_no_mirror"].std(ddof=1)) if len(retrain) > 1 else float("nan")
    return row


def save(row: dict, paths: list[Path]) -> None:
    for path in paths:
        path.write_text(json.dumps(row, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small search and retrain (about 3 minutes)")
    parser.add_argument("--storage", default="runs")
    parser.add_argument("--name", default=None, help="default: headline or headline-quick")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the table here, after each phase")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("error: the headline benchmark needs a CUDA GPU, and none is visible here", file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count()
    plan = QUICK if args.quick else FULL
    name = args.name or ("headline-quick" if args.quick else "headline")
    experiment = f"{args.storage.rstrip('/')}/{name}"
    data = [f"data_dir={args.data_dir}"] if args.data_dir else []
    began = time.perf_counter()
    with mps():
        search_seconds = _run(
            ["search.run", "space=full", f"max_params={MAX_PARAMS}", *plan["search"], f"storage={args.storage}",
             f"name={name}", *data]
        )
        row = search_row(experiment, search_seconds, gpus)
        paths = [Path(experiment, "headline.json"), *([Path(args.json)] if args.json else [])]
        save(row, paths)
        print(f"search: {search_seconds:.0f} s, efficiency {row['search_efficiency']:.2f}", flush=True)
        retrain_seconds = _run(["search.retrain", experiment, *plan["retrain"], *data])
    row.update(retrain_row(experiment, retrain_seconds, gpus), total_seconds=time.perf_counter() - began)
    save(row, paths)
    width = max(map(len, row))
    for key, value in row.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    met = row["test_acc_mean"] >= GOAL and row["params"] <= MAX_PARAMS
    print(f"goal >= {GOAL:.1%} mean test accuracy under {MAX_PARAMS:,} parameters: {'met' if met else 'MISSED'}; "
          f"{row['total_seconds'] / 60:.1f} minutes in all (target 10{', --quick 3' if args.quick else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
