"""winner/: the retrain's tables, model files, figures and ONNX check, built in a temporary folder
and published whole (renamed locally; file by file on an object store)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from model.data import CLASSES
from results.numbers import counted
from results.schema import WINNER_FOLDER, locate
from search.retrain.plan import Plan

# ONNX vs PyTorch: logits may differ by float rounding; an argmax may only differ where PyTorch's
# two best logits are closer than this (a tie at float32 precision).
ONNX_TOLERANCE = 1e-3




def write_and_publish(plan: Plan, outs: list[dict[str, Any]], test: tuple[np.ndarray, np.ndarray]) -> tuple[dict, list[str]]:
    """winner/ built in a temporary folder, then published; (the ONNX check, the file names)."""
    fs, folder = locate(plan.run)
    local = isinstance(fs, pafs.LocalFileSystem)
    if local:  # what a retrain killed while writing (SIGKILL: no cleanup) left; the lock makes it no one else's
        for left in Path(folder).glob(f".{WINNER_FOLDER}.*"):  # .winner.HEX.tmp, and publish's .winner.old-PID
            shutil.rmtree(left, ignore_errors=True)
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

    title = f"{plan.source}, {counted(len(outs), 'seed')}, {first['train_images']:,} training images"
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
