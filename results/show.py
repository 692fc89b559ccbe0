"""`python -m results.show runs/NAME [runs/OTHER ...]`: an experiment's report on the terminal.

One experiment: a summary (space, budget, trials by status, compute used), the top trials with
the hyperparameters that vary across its trials, and, once the winner was retrained, its test
accuracy next to the report's and its per-class scores. Several: one comparison table, a column
per experiment. Reads the report written by `python -m results.collect`; needs no Ray.
"""

from __future__ import annotations

import math
import sys

import pandas as pd
from rich.console import Console, Group
from rich.table import Table

from results.load import Experiment, load
from results.schema import CONFIG_COLUMNS, REPORT_FOLDER, join

# Test accuracies in the seed report: its final CNN (BN + augmentation) and its baseline, for scale.
REPORT_TEST_ACC = {"report: with augmentation": 0.9274, "report: baseline": 0.885}


def top_trials_table(exp: Experiment, n: int = 5) -> Table:
    """The `n` trials with the best validation accuracy, with every hyperparameter that varies
    across the experiment's trials; the caption says where the report is. The best trial of
    best.json (which prefers completed trials) is in bold."""
    varying = varying_columns(exp.trials)
    table = Table(title=f"{exp.name}: top {n} of {len(exp.trials)} trials", caption=f"report: {join(exp.path, REPORT_FOLDER)}")
    for header in ("trial", "status", "epochs", "best val acc", *varying):
        table.add_column(header, justify="left" if header in ("trial", "status") else "right")
    ranked = exp.trials.sort_values(["best_val_acc", "trial_id"], ascending=[False, True], na_position="last")
    best_id = exp.best["trial_id"] if exp.best else None
    for _, trial in ranked.head(n).iterrows():
        table.add_row(
            trial["trial_id"],
            trial["status"],
            str(trial["epochs_run"]),
            percent(trial["best_val_acc"]),
            *[text(trial[name]) for name in varying],
            style="bold" if trial["trial_id"] == best_id else None,
        )
    return table


def varying_columns(trials: pd.DataFrame) -> list[str]:
    """Config fields with more than one value across `trials`, in Config field order."""
    return [name for name in CONFIG_COLUMNS if trials[name].nunique(dropna=False) > 1]


def summary_table(exp: Experiment) -> Table:
    table = Table(title=exp.name, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    run = exp.run
    rows = {
        "path": exp.path,
        "space": run["space"],
        "budget": f"{run['budget']}: {run['trials']} trials of up to {run['max_epochs']} epochs "
        f"(ASHA grace {run['grace']}, eta {run['eta']}), {run['concurrency']} at a time",
        "trials": status_text(exp),
        "compute": compute_text(exp),
        "best": best_text(exp),
        "started": run.get("started", "-"),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def retrain_table(exp: Experiment) -> Table:
    """The winner's test accuracy over its retrain seeds, next to the report's."""
    table = Table(title="test accuracy: the best config retrained on all training images")
    table.add_column("model")
    table.add_column("test acc", justify="right")
    table.add_row(f"this search's best ({len(exp.retrain)} seeds)", accuracy_spread(exp.retrain["test_acc"]))
    for model, accuracy in REPORT_TEST_ACC.items():
        table.add_row(model, percent(accuracy))
    return table


def per_class_table(exp: Experiment) -> Table:
    table = Table(title="per class, on the test set")
    for header in ("class", "precision", "recall", "f1", "support"):
        table.add_column(header, justify="left" if header == "class" else "right")
    for _, row in exp.per_class.iterrows():
        table.add_row(row["class"], percent(row["precision"]), percent(row["recall"]), percent(row["f1"]), str(row["support"]))
    return table


def comparison_table(experiments: list[Experiment]) -> Table:
    """One column per experiment: budget, trials, compute, best trial and its hyperparameters
    (those that differ between the experiments' best configs), retrain test accuracy."""
    table = Table(title="experiments side by side")
    table.add_column("")
    for exp in experiments:
        table.add_column(exp.path, justify="right")
    rows = {
        "space": [exp.run["space"] for exp in experiments],
        "budget": [f"{exp.run['budget']} ({exp.run['trials']} x {exp.run['max_epochs']} epochs)" for exp in experiments],
        "trials": [status_text(exp) for exp in experiments],
        "compute": [compute_text(exp) for exp in experiments],
        "best val acc": [percent(exp.best["metrics"]["val_acc"]) if exp.best else "-" for exp in experiments],
        "best trial": [best_trial_text(exp) for exp in experiments],
        "test acc (retrain)": [accuracy_spread(exp.retrain["test_acc"]) for exp in experiments],
    }
    best_configs = pd.DataFrame([exp.best["config"] if exp.best else {} for exp in experiments], columns=list(CONFIG_COLUMNS))
    for name in varying_columns(best_configs):
        rows[f"best {name}"] = [text(value) for value in best_configs[name]]
    for label, cells in rows.items():
        table.add_row(label, *cells)
    return table


def status_text(exp: Experiment) -> str:
    counts = exp.status_counts()
    return f"{len(exp.trials)}: " + (", ".join(f"{n} {status}" for status, n in counts.items()) or "none")


def compute_text(exp: Experiment) -> str:
    """Trial hours (epoch time summed over trials) and GPU-hours (each trial's time x its GPUs)."""
    seconds = exp.trials["seconds"]
    gpu_seconds = (seconds * exp.trials["gpus_per_trial"]).sum()
    return f"{seconds.sum() / 3600:.2f} trial-hours, {gpu_seconds / 3600:.2f} GPU-hours"


def best_text(exp: Experiment) -> str:
    if exp.best is None:
        return "no trial reported a result"
    return f"{percent(exp.best['metrics']['val_acc'])} val acc, trial {best_trial_text(exp)}"


def best_trial_text(exp: Experiment) -> str:
    """'0a1b2_00003 (completed), epoch 27 of 30': where best.json's accuracy was reached."""
    if exp.best is None:
        return "-"
    metrics = exp.best["metrics"]
    return f"{exp.best['trial_id']} ({exp.best['status']}), epoch {metrics['epoch']} of {metrics['epochs_run']}"


def accuracy_spread(accuracies: pd.Series) -> str:
    """'93.10% ± 0.15%' (sample standard deviation over seeds), one value alone, or '-' for none."""
    if accuracies.empty:
        return "-"
    if len(accuracies) == 1:
        return percent(accuracies.iloc[0])
    return f"{percent(accuracies.mean())} ± {percent(accuracies.std())}"


def percent(fraction: float) -> str:
    return "-" if math.isnan(fraction) else f"{100 * fraction:.2f}%"


def text(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def show(experiments: list[Experiment], console: Console) -> None:
    if len(experiments) > 1:
        console.print(comparison_table(experiments))
        return
    exp = experiments[0]
    parts = [summary_table(exp), top_trials_table(exp)]
    if not exp.retrain.empty:
        parts.append(retrain_table(exp))
    if not exp.per_class.empty:
        parts.append(per_class_table(exp))
    console.print(Group(*parts))


def wide_console() -> Console:
    """The terminal's width; 160 columns when piped to a file (rich would assume 80 and squeeze tables)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def main(argv: list[str]) -> int:
    if not argv or any(arg.startswith("-") for arg in argv):
        print("usage: python -m results.show EXPERIMENT_FOLDER [...] (e.g. runs/NAME, or a URI)", file=sys.stderr)
        return 2
    try:
        experiments = [load(path) for path in argv]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    show(experiments, wide_console())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
