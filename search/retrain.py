"""`python -m search.retrain runs/NAME [seeds=3 epochs=30 trial=ID config=seed|baseline key=value ...]`

The final step of a search: retrain one configuration on ALL 60,000 training images (no
validation set) with several seeds in parallel, as Ray tasks, and evaluate each seed exactly once
on the 10,000 test images. Which configuration:

  (default)          the search's best trial: results.load(runs/NAME).best["config"]
  trial=ID           that trial of the search (its row in results.load(runs/NAME).trials)
  config=seed|...    a preset; runs/NAME need not exist yet (it is created)

then any Config key (filters=32,64 dense=128 lr=1e-3 ...) on top. `epochs` sets the run length
(and the schedule's), `seed` the first seed (seeds are seed, seed+1, ...; default 0, 1, 2).

runs/NAME is a local folder or a URI (s3://BUCKET/runs/NAME, file:///...). The retrain holds the
folder's lock (search.lock) while it runs: it does not start while a search works there, and a
search does not resume while it runs. A seed whose worker or node dies is run again (MAX_RETRIES).

Writes runs/NAME/winner/ as a whole (built in a temporary folder, then renamed): retrain.parquet
(per seed), retrain_epochs.parquet (per seed per epoch), per_class.parquet and confusion.parquet
(first seed), model.pt and model.onnx (first seed), and PNG figures (learning_curves, confusion,
predictions, misclassified); table names and schemas: results.schema.WINNER_TABLES. Nothing is
published unless ONNX Runtime's test-set predictions agree with PyTorch's. On an object store
winner/ is replaced file by file (object stores cannot rename a folder).
"""

from __future__ import annotations

from model import overrides

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the slow imports below ends in one line
    overrides.starting()

import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from model import data as fmnist
from model.config import MAX_EPOCHS, MAX_SEED, PRESETS, Config, field_types, preset
from model.data import CLASSES, Split
from results.schema import WINNER_FOLDER, file_type, join, locate
from results.numbers import clock, number
from results.show import matches_report, not_comparable_text, report_accuracies
from search.devices import mps_note
from search.storage import check_writable

RETRAIN_KEYS = {
    "seeds": "how many seeds to train (default 3)",
    "epochs": "epochs per seed, also the schedule's length (default 30)",
    "trial": "retrain this trial of the search instead of the best one",
    "config": "retrain a preset instead: " + ", ".join(PRESETS),
    "data_dir": "folder with the Fashion-MNIST files (default: FASHION_MNIST_DIR, then Debian's package)",
    "address": "join this Ray cluster (auto or host:port); default: start a local Ray",
    "cpus_per_trial": "CPUs per seed (default: the cluster's CPUs shared between the seeds)",
    "gpus_per_trial": "GPUs per seed, fractions allowed (default: the GPUs shared between the seeds, at most 1 each; 0 without GPUs)",
    "subset": "train on a stratified subset of this many training images (quick runs and tests)",
    "device": "cpu or cuda (default: the GPU Ray assigns a seed when gpus_per_trial > 0, else the CPU)",
}
MAX_SEEDS = 100  # a sane cap: each seed is a whole training run
MAX_RETRIES = 2  # a seed task lost with its worker or node runs again; an error in training does not
PROGRESS_POLL_S = 1.0  # seconds between the driver's looks for finished epochs
HEARTBEAT_S = 60.0  # seconds without a finished epoch before a line says the seeds are still training
# ONNX vs PyTorch: logits may differ by float rounding; an argmax may only differ where PyTorch's
# two best logits are closer than this (a tie at float32 precision).
ONNX_TOLERANCE = 1e-3


class BadResources(ValueError):
    """cpus_per_trial / gpus_per_trial that the cluster cannot give: bad input, found once Ray runs."""


@dataclass(frozen=True)
class Plan:
    run: str  # the run folder as given: a local path or a URI
    cfg: Config  # with epochs applied; seed = the first seed
    source: str  # where the config came from, for the printout and model.pt
    seeds: tuple[int, ...]
    data_dir: str | None
    subset: int | None
    address: str
    cpus_per_trial: float | None
    gpus_per_trial: float | None
    device: str | None


def usage() -> str:
    keys = "\n".join(f"  {key:<15} {text}" for key, text in RETRAIN_KEYS.items())
    return f"{__doc__.strip()}\n\nKeys:\n{keys}\n  seed            the first seed (default 0)\n  and every Config key"


def parse_args(argv: list[str]) -> Plan:
    """Everything checked before anything runs or is created; ValueError (one line) otherwise."""
    from search.ray_session import check_address

    if not argv or "=" in argv[0] or argv[0].startswith("-"):
        raise ValueError("usage: python -m search.retrain runs/NAME [key=value ...]; the run folder comes first (--help)")
    run = overrides.parse_text("the run folder", argv[0])
    config_keys = list(field_types())
    args = overrides.parse(argv[1:], [*RETRAIN_KEYS, *(k for k in config_keys if k not in RETRAIN_KEYS)])
    if "trial" in args and "config" in args:
        raise ValueError("give trial=ID or config=PRESET, not both")
    check_writable(run)
    if "config" in args:
        name = args.pop("config")
        base, source = preset(name), f"preset {name}"
    else:
        base, source = _config_from_search(run, args.pop("trial", None))
    seeds = overrides.parse_int("seeds", args.pop("seeds", "3"), 1, MAX_SEEDS)
    epochs = overrides.parse_int("epochs", args.pop("epochs", "30"), 1, MAX_EPOCHS)
    data_dir = overrides.parse_text("data_dir", args.pop("data_dir")) if "data_dir" in args else None
    subset = overrides.parse_int("subset", args.pop("subset"), 1, fmnist.SPLITS["train"]) if "subset" in args else None
    address = check_address(args.pop("address", ""))
    cpus = overrides.parse_float("cpus_per_trial", args.pop("cpus_per_trial"), 0) if "cpus_per_trial" in args else None
    gpus = overrides.parse_float("gpus_per_trial", args.pop("gpus_per_trial"), 0) if "gpus_per_trial" in args else None
    if cpus is not None and cpus <= 0:
        raise ValueError(f"cpus_per_trial={cpus}: must be above 0")
    if gpus is not None and gpus > 1 and gpus != int(gpus):
        raise ValueError(f"gpus_per_trial={gpus}: above 1 it must be a whole number of GPUs")
    device = args.pop("device", None)
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device={device!r}: choose cpu or cuda")
    if device == "cuda" and gpus == 0:
        raise ValueError("device=cuda with gpus_per_trial=0: a task without a GPU cannot use cuda")
    first_seed = overrides.parse_int("seed", args.pop("seed"), 0, MAX_SEED - seeds + 1) if "seed" in args else 0
    cfg = Config.from_flat({**args, "epochs": epochs, "seed": first_seed}, base=base)  # the rest: Config keys
    fmnist.check_sizes(0, subset, cfg.batch_size)
    return Plan(
        run, cfg, source, tuple(range(first_seed, first_seed + seeds)), data_dir, subset, address, cpus, gpus, device
    )


def _config_from_search(run: str, trial: str | None) -> tuple[Config, str]:
    """The best (or the named) trial's config from the search results in `run`."""
    if file_type(run) != pafs.FileType.Directory:
        raise ValueError(f"{run}: no such run folder; give config=seed or config=baseline to retrain a preset there")
    import results

    try:
        found = results.load(run)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{run}: no search results to retrain from ({e}); give config=seed|baseline instead") from None
    if trial is None:
        best = found.best
        if not best:
            ended = ", ".join(f"{n} {status}" for status, n in found.status_counts().items()) or "none yet"
            raise ValueError(f"{run}: no trial of the search reported a result (trials: {ended}), so there is no best "
                             "trial; give trial=ID or config=seed|baseline")
        return Config.from_flat(best["config"]), f"best trial {best['trial_id']}"
    rows = found.trials[found.trials["trial_id"] == trial]
    if rows.empty:
        some = ", ".join(found.trials["trial_id"].head(5))
        raise ValueError(f"trial={trial!r}: not a trial of {run} (trials are e.g. {some})")
    row = rows.iloc[0]  # trial ids are unique in the trials table
    return Config.from_flat({key: row[key] for key in field_types()}), f"trial {trial}"


# --------------------------------------------------------------------------------------------
# One seed, as a Ray task. Module-level so that workers import it (the package is installed).


def retrain_seed(
    flat: dict[str, Any], split: Split, test_images: np.ndarray, test_labels: np.ndarray, device: str, threads: int,
    progress,
) -> dict[str, Any]:
    """Train one seed on the whole split, evaluate on the test set once; plain data back to the driver.
    device: "cpu", or "cuda" for the GPU Ray assigned this task. progress: a ray.util.queue.Queue
    that gets each epoch's row as it ends, for the driver's line per epoch (train_seeds)."""
    import torch

    from model.trainer import Trainer, on_device, score
    from search.devices import assigned_device

    torch.set_num_threads(max(1, threads))
    cfg = Config.from_flat(flat)
    start = time.perf_counter()
    trainer = Trainer(cfg, split, "cpu" if device == "cpu" else assigned_device())
    epochs = []
    for _ in range(cfg.epochs):
        m = trainer.run_epoch()
        epochs.append({"seed": cfg.seed, "epoch": m.epoch, "train_loss": m.train_loss, "train_acc": m.train_acc,
                       "lr": m.lr, "seconds": m.seconds, "images_per_second": m.images_per_second})
        progress.put(epochs[-1])
    labels = on_device(test_labels, trainer.device)
    logits = trainer.logits(on_device(test_images, trainer.device))  # the one look at the test set
    test_loss, test_acc = score(logits, labels)
    no_mirror_acc = test_acc
    if cfg.mirror_tta:  # the same weights without the mirror average, to show what it adds
        net = trainer.eval_net()
        net.mirror_tta = False
        no_mirror_acc = score(trainer.logits(on_device(test_images, trainer.device)), labels)[1]
        net.mirror_tta = True
    return {
        "seed": cfg.seed,
        "epochs": epochs,
        "test_acc": test_acc,
        "test_acc_no_mirror": no_mirror_acc,
        "test_loss": test_loss,
        "seconds": time.perf_counter() - start,
        "params": trainer.params,
        "train_images": len(split.train_images),
        "device": str(trainer.device),
        "logits": logits.float().cpu().numpy(),
        # What was evaluated: the weight average when cfg.ema is on.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in trainer.eval_net().state_dict().items()},
    }


def _resources(plan: Plan, cluster: dict[str, float]) -> tuple[float, float, str]:
    """(CPUs, GPUs, device) of each seed's task. By default the seeds share the GPUs there are,
    all at once: three seeds on one GPU get a third each (with MPS their kernels run side by side),
    instead of a whole GPU each, one after another."""
    gpus = plan.gpus_per_trial
    if gpus is None:
        have = int(cluster.get("GPU", 0))
        gpus = 1 / math.ceil(len(plan.seeds) / have) if have >= 1 and plan.device != "cpu" else 0.0
    cpus = plan.cpus_per_trial
    if cpus is None:
        cpus = 1.0 if gpus else max(1.0, float(int(cluster.get("CPU", 1) // len(plan.seeds))))
    if plan.device == "cuda" and not gpus:
        raise BadResources("device=cuda, but the cluster has no GPUs to give a seed; give gpus_per_trial= or device=cpu")
    device = "cpu" if plan.device == "cpu" or not gpus else "cuda"
    if plan.address:  # a joined cluster may autoscale: what it has now is no limit
        return cpus, gpus, device
    if gpus > cluster.get("GPU", 0):
        raise BadResources(f"gpus_per_trial={gpus:g}: the cluster has {cluster.get('GPU', 0):g} GPUs")
    if cpus > cluster.get("CPU", 0):
        raise BadResources(f"cpus_per_trial={cpus:g}: the cluster has {cluster.get('CPU', 0):g} CPUs")
    return cpus, gpus, device


def train_seeds(plan: Plan, split: Split, test: tuple[np.ndarray, np.ndarray], log=print) -> list[dict[str, Any]]:
    """All seeds as parallel Ray tasks (inside a ray_session); results in seed order. Logs a line per
    seed per epoch as it ends, and one every HEARTBEAT_S while none does (a CPU epoch of all the
    images takes minutes)."""
    import ray
    from ray.util.queue import Queue

    cpus, gpus, device = _resources(plan, ray.cluster_resources())
    log(
        f"training {_count(len(plan.seeds), 'seed')} x {_count(plan.cfg.epochs, 'epoch')} on {len(split.train_images):,} images "
        f"(tasks of {cpus:g} CPU, {gpus:g} GPU, device {device})"
    )
    note = None if plan.address else mps_note(gpus, ray.cluster_resources().get("GPU", 0))
    if note:
        log(note)
    task = ray.remote(retrain_seed).options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES)
    split_ref, images_ref, labels_ref = ray.put(split), ray.put(test[0]), ray.put(test[1])  # once, shared
    # The seeds' epochs reach the driver as they end (a retrain runs for hours: never quiet). An actor
    # that takes no CPU: it must not wait for, nor hold, a CPU the seeds need.
    progress = Queue(actor_options={"num_cpus": 0})
    pending = {
        task.remote(replace(plan.cfg, seed=s).to_flat(), split_ref, images_ref, labels_ref, device, max(1, int(cpus)),
                    progress): s
        for s in plan.seeds
    }
    done: dict[int, dict[str, Any]] = {}
    reported = {s: 0 for s in plan.seeds}  # epochs each seed has reported
    started = last_line = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_POLL_S)
        for row in progress.get_nowait_batch(progress.qsize()):  # before a seed's result: its epochs first
            again = " (again: its worker was lost)" if row["epoch"] <= reported[row["seed"]] else ""
            reported[row["seed"]] = row["epoch"]
            log(f"  [{clock(time.monotonic() - started)}] seed {row['seed']}: epoch {row['epoch']}/{plan.cfg.epochs}{again}, "
                f"train loss {row['train_loss']:.4f}, train accuracy {100 * row['train_acc']:.2f}%, {row['seconds']:,.0f} s")
            last_line = time.monotonic()
        if not ready:
            if time.monotonic() - last_line >= HEARTBEAT_S:
                under_way = ", ".join(f"seed {s} in epoch {reported[s] + 1}" for s in sorted(pending.values()))
                log(f"  [{clock(time.monotonic() - started)}] still training: {under_way}")
                last_line = time.monotonic()
            continue
        seed = pending.pop(ready[0])
        out = ray.get(ready[0])
        done[seed] = out
        log(
            f"  seed {seed}: test accuracy {100 * out['test_acc']:.2f}% (loss {out['test_loss']:.4f}), "
            f"{_count(len(out['epochs']), 'epoch')} in {out['seconds']:,.0f} s on {out['device']}"
        )
    return [done[s] for s in plan.seeds]


# --------------------------------------------------------------------------------------------
# The driver's side: tables, model files, figures, ONNX check, all into a temporary folder.


def write_winner(plan: Plan, outs: list[dict[str, Any]], test: tuple[np.ndarray, np.ndarray], folder: Path) -> dict[str, Any]:
    """Every file of winner/ into `folder`; returns the ONNX check's numbers. ValueError when ONNX disagrees."""
    import pandas as pd

    from model import evaluation, export
    from results import figures
    from results.schema import WINNER_TABLES, write_table

    images, labels = test
    retrain = pd.DataFrame(
        [{"seed": o["seed"], "test_acc": o["test_acc"], "test_acc_no_mirror": o["test_acc_no_mirror"],
          "test_loss": o["test_loss"], "epochs": len(o["epochs"]),
          "seconds": o["seconds"], "params": o["params"]} for o in outs]
    )
    epochs = pd.DataFrame([row for o in outs for row in o["epochs"]])

    first = outs[0]
    predicted, confidence = evaluation.predictions(first["logits"])
    cm = evaluation.confusion_matrix(labels, predicted)
    per_class = pd.DataFrame(evaluation.per_class(cm).rows())
    confusion = pd.DataFrame(cm, columns=list(CLASSES))
    confusion.insert(0, "true", list(CLASSES))
    tables = {"retrain": retrain, "retrain_epochs": epochs, "per_class": per_class, "confusion": confusion}
    for name, schema in WINNER_TABLES.items():  # the file names results.load reads back
        write_table(tables[name], folder / f"{name}.parquet", schema)

    cfg = replace(plan.cfg, seed=first["seed"])
    metadata = {
        "source": plan.source, "run": plan.run, "seed": first["seed"], "test_acc": first["test_acc"],
        "test_loss": first["test_loss"], "epochs": len(first["epochs"]), "train_images": first["train_images"],
        "params": first["params"], "classes": list(CLASSES), "input": "float32 (N, 1, 28, 28) pixels in [0, 1]",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    export.save_model(folder / "model.pt", cfg, first["state_dict"], metadata)
    _, net = export.load_model(folder / "model.pt")  # the file as a user would load it
    export.export_onnx(net, folder / "model.onnx")
    torch_logits = export.torch_logits(net, images)
    onnx_logits = export.onnx_logits(folder / "model.onnx", images)
    check = _onnx_check(torch_logits, onnx_logits)
    if check["disagree_beyond_ties"]:
        raise ValueError(
            f"ONNX Runtime disagrees with PyTorch on {check['disagree']} of {check['images']:,} test images "
            f"(max |logit diff| {check['max_abs_diff']:.2e}); winner/ not written"
        )

    title = f"{plan.source}, {_count(len(outs), 'seed')}, {first['train_images']:,} training images"
    figures.learning_curves(epochs, folder / "learning_curves.png", title=title)
    figures.confusion(cm, folder / "confusion.png")
    figures.predictions(images, labels, predicted, confidence, folder / "predictions.png")
    figures.misclassified(images, labels, predicted, confidence, folder / "misclassified.png")
    return check


def _onnx_check(torch_logits: np.ndarray, onnx_logits: np.ndarray) -> dict[str, Any]:
    a, b = torch_logits.argmax(1), onnx_logits.argmax(1)
    top2 = np.sort(torch_logits, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) < ONNX_TOLERANCE
    differ = a != b
    return {
        "images": len(a),
        "agree": int((~differ).sum()),
        "disagree": int(differ.sum()),
        "disagree_beyond_ties": int((differ & ~tie).sum()),
        "max_abs_diff": float(np.abs(torch_logits - onnx_logits).max()) if len(a) else 0.0,
    }


def publish(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with renames only: winner/ is either the old or the new one."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def upload(staging: Path, fs: pafs.FileSystem, target: str) -> None:
    """Copy `staging`'s files into `target` on an object store, one object each (each appears whole)."""
    fs.create_dir(target, recursive=True)
    for file in sorted(staging.iterdir()):
        with open(file, "rb") as source, fs.open_output_stream(f"{target}/{file.name}") as out:
            shutil.copyfileobj(source, out)


def load_data(plan: Plan) -> tuple[Split, tuple[np.ndarray, np.ndarray]]:
    """All training images (or a stratified subset), no validation set: everything trains; and the test set."""
    return fmnist.load_split(plan.data_dir, 0, plan.subset), fmnist.load("test", plan.data_dir)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _describe(cfg: Config) -> str:
    defaults = Config().to_flat()
    changed = [f"{k}={number(v)}" for k, v in cfg.to_flat().items() if defaults[k] != v and k != "seed"]
    return " ".join(changed) or "(the seed preset's values)"


def main(argv: list[str]) -> int:
    if overrides.wants_help(argv):
        print(usage())
        return 0
    try:
        plan = parse_args(argv)
        split, test = load_data(plan)
    except ValueError as e:
        return overrides.reject(e)

    import ray

    from search.lock import Lock, LockError
    from search.ray_session import RayUnavailable, ray_session
    from search.report import first_error_line

    print(f"retrain of {plan.run}: {plan.source}")
    print(f"config (differences from the defaults): {_describe(plan.cfg)}")
    lock: Lock | None = None
    try:
        with ray_session(plan.address):
            lock = Lock(plan.run, "search.retrain")
            lock.acquire()
            if lock.note:
                print(lock.note, file=sys.stderr)
            outs = train_seeds(plan, split, test)
        check, files = _write_and_publish(plan, outs, test)
    except (BadResources, RayUnavailable, LockError) as e:
        return overrides.reject(e)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (model.overrides.command)
        print("interrupted: winner/ left as it was", file=sys.stderr)
        return overrides.interrupted_code()
    except ray.exceptions.RayError as e:  # a seed failed in training, or lost its worker more than MAX_RETRIES times
        print(f"error: a seed failed: {first_error_line(str(e)) or type(e).__name__}; winner/ left as it was", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()

    acc = np.array([o["test_acc"] for o in outs]) * 100
    spread = f" ± {acc.std(ddof=1):.2f}% (mean ± sd)" if len(acc) > 1 else " (one seed: no sd)"
    report = report_accuracies() if matches_report(outs[0]["train_images"], {plan.cfg.epochs}) else not_comparable_text()
    print(f"test accuracy over {_count(len(acc), 'seed')}: {acc.mean():.2f}%{spread}; {report}")
    print(
        f"ONNX Runtime vs PyTorch, seed {outs[0]['seed']} on {check['images']:,} test images: argmax agreement "
        f"{check['agree']:,}/{check['images']:,}, max |logit diff| {check['max_abs_diff']:.2e}"
    )
    print(f"written to {join(plan.run, WINNER_FOLDER)}/: {', '.join(files)}")
    return 0


def _write_and_publish(plan: Plan, outs: list[dict[str, Any]], test: tuple[np.ndarray, np.ndarray]) -> tuple[dict, list[str]]:
    """winner/ built in a temporary folder, then published; (the ONNX check, the file names)."""
    fs, folder = locate(plan.run)
    local = isinstance(fs, pafs.LocalFileSystem)
    # Locally the staging folder sits next to winner/ (same filesystem: renames); else in /tmp.
    staging = Path(folder) / f".{WINNER_FOLDER}.{uuid.uuid4().hex}.tmp" if local else Path(tempfile.mkdtemp())
    try:
        staging.mkdir(parents=True, exist_ok=True)
        check = write_winner(plan, outs, test, staging)
        files = sorted(p.name for p in staging.iterdir())
        if local:
            publish(staging, Path(folder) / WINNER_FOLDER)
        else:
            upload(staging, fs, f"{folder}/{WINNER_FOLDER}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return check, files


if __name__ == "__main__":
    overrides.command(main)
