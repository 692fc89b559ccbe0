"""PNG figures: of a search (results.show), and of a final retrain (learning curves, confusion
matrix, predictions, worst mistakes).

matplotlib's object API with the Agg canvas only (no pyplot, no display, no global figure state),
so it runs headless and inside worker processes. Every function writes one PNG and returns its path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from model.data import CLASSES
from results.status import COMPLETED, ERROR, PRUNED, UNFINISHED

DPI = 110
# How each trial ended, as a colour: kept to the end, stopped by ASHA, failed, cut off by Ctrl-C.
STATUS_COLOURS = {COMPLETED: "tab:green", PRUNED: "tab:gray", ERROR: "tab:red", UNFINISHED: "tab:blue"}
# The cost objectives of results.pareto, as an axis label.
COST_AXES = {"params": "trainable parameters", "latency_ms": "latency, ms per batch of 1 on the trial's device"}


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes: for a folder that may be a URI (results.schema.write_bytes)."""
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def device_timeline(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Each epoch with the device-hours spent once it was reached and the best validation accuracy
    so far (a trial counts by its latest epoch, the one notion of best). Trials are taken in the
    order they were created (the trials table's order), each trial's epochs in turn: the tables
    keep no clock, so trials that ran side by side are laid end to end. Device time: an epoch's
    seconds x the GPUs of its trial (CPUs for a CPU search). Columns device_hours, best_val_acc."""
    if epochs.empty:  # no trial reported (every one failed): nothing spent, nothing found
        return pd.DataFrame({"device_hours": [], "best_val_acc": []})
    devices = trials.set_index("trial_id").apply(
        lambda t: t["gpus_per_trial"] if t["gpus_per_trial"] > 0 else t["cpus_per_trial"], axis=1)
    order = {trial_id: i for i, trial_id in enumerate(trials["trial_id"])}
    rows = epochs.assign(order=epochs["trial_id"].map(order)).sort_values(["order", "epoch"])
    hours = (rows["seconds"] * rows["trial_id"].map(devices)).cumsum() / 3600
    latest: dict[str, float] = {}
    best = []
    for trial_id, value in zip(rows["trial_id"], rows["val_acc"]):
        latest[trial_id] = value
        best.append(max(latest.values()))
    return pd.DataFrame({"device_hours": hours.to_numpy(), "best_val_acc": best})


def rung_epochs(max_epochs: int, grace: int, eta: int) -> list[int]:
    """ASHA's rungs below max_epochs: grace x eta^k epochs, where weak trials are stopped."""
    rungs, milestone = [], grace
    while milestone < max_epochs:
        rungs.append(milestone)
        milestone *= eta
    return rungs


def search_figure(trials: pd.DataFrame, epochs: pd.DataFrame, importance: pd.DataFrame, run: dict, title: str) -> Figure:
    """A search at a glance: the best validation accuracy so far against device time, every trial's
    validation curve coloured by how it ended with ASHA's rungs marked, and the importance of each
    hyperparameter as bars (none: too few finished trials)."""
    fig = Figure(figsize=(16, 5), layout="constrained")
    best_ax, curves_ax, importance_ax = fig.subplots(1, 3, width_ratios=(1, 1.2, 0.8))
    timeline = device_timeline(trials, epochs)
    unit = "GPU" if (trials["gpus_per_trial"] > 0).any() else "CPU"
    best_ax.step(timeline["device_hours"], 100 * timeline["best_val_acc"], where="post", color="black",
                 marker="o" if len(timeline) == 1 else None)  # one epoch in all: a point, not an empty step
    if timeline.empty:
        best_ax.text(0.5, 0.5, "no trial reported a result", ha="center", va="center", transform=best_ax.transAxes)
    best_ax.set(xlabel=f"{unit}-hours spent (trials laid end to end)", ylabel="best validation accuracy so far (%)",
                title="best so far against device time")
    for status, colour in STATUS_COLOURS.items():
        rows = trials[trials["status"] == status]
        if rows.empty:
            continue
        for trial_id in rows["trial_id"]:
            curve = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
            curves_ax.plot(curve["epoch"], 100 * curve["val_acc"], color=colour, alpha=0.6, linewidth=1,
                           marker="o" if len(curve) == 1 else None, markersize=3)
        curves_ax.plot([], [], color=colour, label=f"{status} ({len(rows)})")  # one legend entry a status
    for milestone in rung_epochs(run["max_epochs"], run["grace"], run["eta"]):
        curves_ax.axvline(milestone, color="tab:orange", linestyle="--", linewidth=1)
    curves_ax.plot([], [], color="tab:orange", linestyle="--", label="ASHA rung")
    curves_ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="every trial's validation curve")
    curves_ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    curves_ax.set_xlim(0.5, run["max_epochs"] + 0.5)  # epochs 1..max_epochs, even when one epoch is all there is
    curves_ax.legend(loc="lower right")
    if importance.empty:
        importance_ax.text(0.5, 0.5, "too few finished trials\nfor importance", ha="center", va="center")
        importance_ax.set_axis_off()
    else:
        ranked = importance.iloc[::-1]  # most important at the top
        importance_ax.barh(ranked["parameter"], ranked["importance"], color="tab:purple")
        importance_ax.set(xlabel="importance (share, PED-ANOVA)", title="hyperparameter importance")
    for ax in (best_ax, curves_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def pareto_figure(trials: pd.DataFrame, front: pd.DataFrame, cost: str, title: str) -> Figure:
    """Validation accuracy against the cost objective (params or latency_ms, a log axis): every
    trial that reported, at its last epoch and coloured by how it ended, in the background; the
    Pareto front on top, joined as the staircase it is (each step: the accuracy the next larger or
    slower network buys), each point named by its trial id."""
    column = COST_AXES[cost]
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    for status, colour in STATUS_COLOURS.items():
        rows = trials[(trials["status"] == status) & trials[cost].notna() & trials["last_val_acc"].notna()]
        if not rows.empty:
            ax.scatter(rows[cost], 100 * rows["last_val_acc"], s=14, color=colour, alpha=0.35,
                       label=f"{status} ({len(rows)}, at the epoch it stopped)" if status == PRUNED
                       else f"{status} ({len(rows)})")
    by_cost = front.sort_values(cost)
    ax.step(by_cost[cost], 100 * by_cost["last_val_acc"], where="post", color="black", linewidth=1.2)
    ax.scatter(by_cost[cost], 100 * by_cost["last_val_acc"], s=36, color="black", zorder=3,
               label=f"Pareto front ({len(front)})")
    for _, trial in by_cost.iterrows():
        ax.annotate(trial["trial_id"], (trial[cost], 100 * trial["last_val_acc"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set(xlabel=column, ylabel="validation accuracy at the last epoch (%)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    return fig


def learning_curves(epochs: pd.DataFrame, path: str | os.PathLike, title: str = "") -> Path:
    """Training loss and accuracy per epoch, one line per seed (columns seed, epoch, train_loss, train_acc)."""
    return _save(learning_curves_figure(epochs, title), path)


def learning_curves_figure(epochs: pd.DataFrame, title: str = "") -> Figure:
    """learning_curves' figure, unsaved: (training loss, training accuracy) axes."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for seed, rows in epochs.sort_values(["seed", "epoch"]).groupby("seed"):
        marker = "o" if len(rows) < 20 else None
        loss_ax.plot(rows["epoch"], rows["train_loss"], marker=marker, label=f"seed {seed}")
        acc_ax.plot(rows["epoch"], 100 * rows["train_acc"], marker=marker, label=f"seed {seed}")
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="training accuracy (%)", title="training accuracy")
    first, last = epochs["epoch"].min(), epochs["epoch"].max()
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
        if first == last:  # one epoch: matplotlib's margins would make the axis 0.96-1.04, ticks between epochs
            ax.set_xlim(first - 1, last + 1)
            ax.set_xticks([first])
    if title:
        fig.suptitle(title)
    return fig


def confusion(matrix: np.ndarray, path: str | os.PathLike, classes: tuple[str, ...] = CLASSES, title: str = "") -> Path:
    """The confusion matrix (rows true, columns predicted) with every count written in its cell."""
    cm = np.asarray(matrix, dtype=np.int64)
    fig = Figure(figsize=(8.5, 7.5), layout="constrained")
    ax = fig.subplots()
    # Colour by row share, so a class with fewer test images is not washed out.
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="true class")
    total = cm.sum()
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(title or f"confusion matrix: {total:,} test images, accuracy {100 * acc:.2f}%")
    return _save(fig, path)


def _grid(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
    indices: np.ndarray, path: str | os.PathLike, title: str, classes: tuple[str, ...], columns: int,
) -> Path:
    rows = max(1, -(-len(indices) // columns))
    fig = Figure(figsize=(1.9 * columns, 2.15 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, indices):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        right = predicted[i] == labels[i]
        ax.set_title(
            f"pred: {classes[predicted[i]]} ({100 * confidence[i]:.0f}%)\ntrue: {classes[labels[i]]}",
            fontsize=7.5, color="darkgreen" if right else "firebrick",
        )
    fig.suptitle(title)
    return _save(fig, path)


def predictions(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
    path: str | os.PathLike, count: int = 24, seed: int = 0, classes: tuple[str, ...] = CLASSES, columns: int = 6,
) -> Path:
    """A random sample of test images with predicted label, softmax confidence and true label."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
    wrong = int((predicted[picked] != labels[picked]).sum())
    title = f"{len(picked)} random test images: predicted (confidence) / true label; {wrong} wrong in red"
    return _grid(images, labels, predicted, confidence, picked, path, title, classes, columns)


def misclassified(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
    path: str | os.PathLike, count: int = 24, classes: tuple[str, ...] = CLASSES, columns: int = 6,
) -> Path:
    """The misclassified test images the network was most confident about, most confident first."""
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    title = (
        f"the {len(worst)} most confident mistakes of {len(wrong):,} misclassified test images"
        if len(wrong) else "no misclassified test images"
    )
    return _grid(images, labels, predicted, confidence, worst, path, title, classes, columns)
