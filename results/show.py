"""`python -m results.show runs/NAME [runs/OTHER ...] [trial=ID] [columns=all]`: results on the terminal.

One experiment: a summary, the hyperparameters ranked by importance, the top trials with the
hyperparameters that matter most (as many as the width holds), for a multi-objective search
(objective=val_acc,params or val_acc,latency_ms) its Pareto front, and, once the winner was
retrained, its test accuracy and per-class scores; and a figure of the search, written to
runs/NAME/report/search.png and named on the last line (results.figures.search_figure), after that
of the Pareto front (report/pareto.png: every trial behind the front, results.figures.pareto_figure). `columns=all`: the top trials with every hyperparameter
that varies, a column per trial. `trial=ID`: one trial in full (config, metrics, every epoch).
Several experiments: side by side. A folder with only a retrain (config=PRESET) shows the retrain.

Every table fits the terminal's width (80 columns and up) without cutting a trial id or a number:
what does not fit is left out and named. Printed to a file, tables are as wide as they need.
Reads the report written by `python -m results.collect`; needs no Ray.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from model import overrides
from results.importance import MIN_TRIALS, varying
from results.load import RUN_FIELDS, RUN_FILE, Experiment, load, run_kind
from results.numbers import counted, loss, missing, number, percent
from results.pareto import names
from results.schema import CONFIG_COLUMNS, REPORT_FOLDER, expand_home, join, write_bytes
from results.status import COMPLETED, ranked

# Test accuracies in the seed report: its final CNN (BN + augmentation) and its baseline, for scale.
REPORT_TEST_ACC = {"report: with augmentation": 0.9274, "report: baseline": 0.885}
# What the report's figures were trained on: a retrain is set beside them only when it matches.
REPORT_TRAIN_IMAGES, REPORT_EPOCHS = 60_000, 30
FILE_WIDTH = 1_000  # columns when printing to a file: wider than any table, so none is squeezed
TOP = 5  # trials in the top-trials tables
IMPORTANT = 10  # hyperparameters in the importance table
USAGE = "usage: python -m results.show EXPERIMENT_FOLDER [...] [trial=ID] [columns=all]"
KEYS = {"trial": "show this trial in full", "columns": "all: every varying hyperparameter of the top trials"}


class _Unpadded:
    """stdout, less the spaces rich pads every line with to its table's or the console's width:
    invisible on a terminal, but a file (or a pasted line) would keep them. Colour codes that
    follow them stay."""

    _PADDING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)\n")

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(self._PADDING.sub(r"\1\n", text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def wide_console() -> Console:
    """The terminal's width (or $COLUMNS); printing to a file, as wide as the tables need."""
    to_file = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(file=_Unpadded(sys.stdout), width=FILE_WIDTH if to_file else None)


def natural_width(console: Console, options: ConsoleOptions, renderable: RenderableType) -> int:
    """Columns `renderable` takes when nothing is wrapped or cut."""
    return Measurement.get(console, options.update_width(FILE_WIDTH), renderable).maximum


@dataclass(frozen=True, eq=False)
class Fitted:
    """The widest of a series of tables that fits the width it is printed at: build(k) for k
    from `most` down to 0 (k = how many optional columns or blocks it holds)."""

    build: Callable[[int], Table]
    most: int

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        for k in range(self.most, -1, -1):
            table = self.build(k)
            if k == 0 or natural_width(console, options, table) <= options.max_width:
                yield table
                return


class _Table(Table):
    """A Table whose title and caption are lines of their own, wrapped at the width they are
    printed at: rich wraps them at the table's width, so a narrow table (one trial's column)
    broke its title into a word a line even in a file. Measured as the table alone."""

    def __init__(self, title: str | None, caption: str | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.heading, self.note = title, caption

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        if self.heading:
            yield Text(self.heading, style="bold")
        yield from super().__rich_console__(console, options)
        if self.note:
            yield Text(self.note, style="table.caption")


def _table(title: str | None = None, caption: str | None = None) -> Table:
    """Headers underlined, columns two spaces apart, no frame: room for one more column at 80."""
    return _Table(title, caption, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)


def shown_parameters(exp: Experiment) -> list[str]:
    """The hyperparameters that vary across the trials, the most important first."""
    rest = varying(exp.trials)
    by_importance = [name for name in exp.importance["parameter"] if name in rest]
    return by_importance + [name for name in rest if name not in by_importance]


def _top(exp: Experiment, n: int) -> pd.DataFrame:
    """The first n by the search's one measure (results.status.ranked), then errored and unfinished
    trials, ordered among themselves as ranked orders pruned ones (epochs reached, last accuracy)."""
    order = ranked(exp.trials)
    rest = exp.trials[~exp.trials["trial_id"].isin(order["trial_id"])].sort_values(
        ["epochs_run", "last_val_acc", "trial_id"], ascending=[False, False, True], na_position="last")
    return pd.concat([order, rest], ignore_index=True).head(n)


def top_trials_table(exp: Experiment, n: int = TOP) -> Fitted:
    """The `n` trials with the best validation accuracy and as many hyperparameters as fit, the most
    important first; the caption names what was left out. best.json's trial is in bold."""
    params = shown_parameters(exp)
    top = _top(exp, n)
    best_id = exp.best["trial_id"] if exp.best else None

    def build(k: int) -> Table:
        left_out = len(params) - k
        caption = f"report: {join(exp.path, REPORT_FOLDER)}"
        if left_out:
            caption = f"{left_out} more hyperparameters: columns=all, or trial=ID for one trial; {caption}"
        table = _table(f"{exp.name}: top {len(top)} of {counted(len(exp.trials), 'trial')} by last val acc", caption)
        for header in ("trial", "status", "epochs", "val acc", *params[:k]):
            table.add_column(header, justify="left" if header in ("trial", "status") else "right", no_wrap=True)
        for _, trial in top.iterrows():
            table.add_row(
                trial["trial_id"],
                trial["status"],
                str(trial["epochs_run"]),
                percent(trial["last_val_acc"]),
                *[number(trial[name]) for name in params[:k]],
                style="bold" if trial["trial_id"] == best_id else None,
            )
        return table

    return Fitted(build, len(params))


def multi_objective(exp: Experiment) -> bool:
    return len(names(exp.objective)) > 1


def pareto_table(exp: Experiment) -> Table:
    """A multi-objective search's Pareto front (Experiment.pareto), most accurate first: its first
    row is best.json's trial, what search.retrain takes without trial=."""
    cost = names(exp.objective)[1]
    front = exp.pareto
    completed = int((exp.trials["status"] == COMPLETED).sum())
    beaten = "smaller" if cost == "params" else "faster"
    caption = f"no other completed trial is both more accurate and {beaten}; the first is the best (best.json)"
    table = _table(f"{exp.name}: Pareto front, {len(front)} of {completed} completed trials, val acc against {cost}",
                   caption)
    latency = cost == "latency_ms"
    headers = ("trial", "val acc", "params", *(("ms/batch 1", "ms/batch 256") if latency else ()))
    for header in headers:
        table.add_column(header, justify="left" if header == "trial" else "right", no_wrap=True)
    for _, trial in front.iterrows():
        timings = (f"{trial['latency_ms']:.3g}", f"{trial['latency_ms_256']:.3g}") if latency else ()
        table.add_row(trial["trial_id"], percent(trial["last_val_acc"]), _thousands(trial["params"]), *timings)
    return table


def print_command(console: Console, text: str) -> None:
    """A line that ends in a command: never broken by rich at the console's width (a terminal wraps
    it softly, so it is copied and pasted whole)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_pareto(console: Console, exp: Experiment) -> None:
    """A multi-objective search's Pareto front and the command that retrains one of its trials; one
    line while no trial has completed (the front holds completed trials only)."""
    if exp.pareto.empty:
        console.print(f"{exp.name}: no Pareto front yet: no trial has completed", markup=False, highlight=False)
        return
    console.print(pareto_table(exp))
    print_command(console, f"retrain any of them: python -m search.retrain {shlex.quote(exp.path)} trial=ID")


def all_columns_table(exp: Experiment, n: int = TOP) -> Fitted:
    """`columns=all`: the top trials as columns, every varying hyperparameter as a row; as many
    trials as fit the width."""
    params = shown_parameters(exp)
    top = _top(exp, n)

    def build(k: int) -> Table:
        shown = top.head(max(k, 1))
        left_out = len(top) - len(shown)
        caption = f"{left_out} more trials fit a wider terminal" if left_out else None
        table = _table(f"{exp.name}: top {counted(len(shown), 'trial')}, every hyperparameter that varies", caption)
        table.add_column("", no_wrap=True)
        for trial_id in shown["trial_id"]:
            table.add_column(trial_id, justify="right", no_wrap=True)
        rows = {
            "status": shown["status"].tolist(),
            "epochs": [str(e) for e in shown["epochs_run"]],
            "val acc": [percent(a) for a in shown["last_val_acc"]],
            **{name: [number(v) for v in shown[name]] for name in params},
        }
        for label, cells in rows.items():
            table.add_row(label, *cells)
        return table

    return Fitted(build, len(top))


def importance_table(exp: Experiment) -> RenderableType:
    """The varying hyperparameters ranked by importance (the first IMPORTANT), with the best trial's
    value and the values tried."""
    finished = ranked(exp.trials)
    if exp.importance.empty:
        return f"importance: needs at least {MIN_TRIALS} completed or pruned trials and a varying hyperparameter"
    rest = len(exp.importance) - IMPORTANT
    caption = (
        f"Optuna's PED-ANOVA over {len(finished)} finished trials, ranked as TPE ranks them: completed by last "
        "val acc, then pruned by epochs reached. Importances sum to 100%"
        + (f"; {rest} more, less important: results.load(...).importance" if rest > 0 else "")
    )
    table = _table("hyperparameters by importance", caption)
    for header in ("parameter", "importance", "best trial", "values tried"):
        table.add_column(header, justify="right" if header in ("importance", "best trial") else "left")
    best = exp.best["config"] if exp.best else {}
    for _, row in exp.importance.head(IMPORTANT).iterrows():
        name = row["parameter"]
        table.add_row(name, f"{100 * row['importance']:.0f}%", number(best.get(name)), values_tried(finished[name]))
    return table


def values_tried(values: pd.Series) -> str:
    """'0.000102 - 0.00287' for a range (numbers that never repeat), '64 | 128 | 512' for choices."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.is_unique:
        return f"{number(values.min())} - {number(values.max())}"
    return " | ".join(number(v) for v in sorted(set(values.tolist()), key=lambda v: (str(type(v)), v)))  # "|": "64,128" holds commas


def summary_table(exp: Experiment) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a path too long for the line is folded, never cut
    run = exp.run
    kind = run_kind(run)
    stopping = "no early stopping: a record" if kind == "record" else f"ASHA grace {run['grace']}, eta {run['eta']}"
    rows = {
        "experiment": exp.path,
        "space": run["space"] + (f" at width {number(run['width'])}" if run.get("width", 1) != 1 else ""),
        "budget": f"{run['budget']}: {counted(run['trials'], 'trial')} of up to {counted(run['max_epochs'], 'epoch')} "
        f"({stopping}), {run['concurrency']} at a time",
        **({"replay": f"of {run['replay']}: nothing trained; every epoch recorded or predicted from the record, its "
                      "seconds simulated"} if kind == "replay" else {}),
        "data": f"{'all' if run.get('subset') is None else format(run['subset'], ',')} training images, "
        f"{run['val_size']:,} for validation",
        "trials": status_text(exp),
        "compute": compute_text(exp),
        "best": best_text(exp),
        "started": run.get("started", "-"),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def matches_report(train_images: int | None, epochs: set[int]) -> bool:
    """Whether a retrain used the report's data and recipe length, so its figures can sit beside the report's."""
    return train_images == REPORT_TRAIN_IMAGES and epochs == {REPORT_EPOCHS}


def comparable(exp: Experiment) -> bool:
    return exp.winner is not None and matches_report(exp.winner.get("train_images"), set(exp.retrain["epochs"]))


def not_comparable_text() -> str:
    return (f"not comparable with the report's figures ({report_accuracies()}), which trained on "
            f"{REPORT_TRAIN_IMAGES:,} images for {REPORT_EPOCHS} epochs")


def retrained_text(exp: Experiment) -> str:
    """'best trial 0a1b2c3d, 3 seeds x 30 epochs on 60,000 training images'."""
    source = exp.winner["source"] if exp.winner else "the retrained config"
    images = f"{exp.winner['train_images']:,}" if exp.winner else "an unknown number of"
    epochs = sorted(set(exp.retrain["epochs"]))
    return (
        f"{source}, {counted(len(exp.retrain), 'seed')} x {'/'.join(map(str, epochs))} epoch{'s' if epochs != [1] else ''}"
        f" on {images} training images"
    )


def retrain_table(exp: Experiment) -> Group:
    """The retrain's test accuracy over its seeds; the report's figures beside it when comparable."""
    table = _table()
    table.add_column("model")
    table.add_column("test acc", justify="right", no_wrap=True)
    table.add_row(exp.winner["source"] if exp.winner else "retrained", accuracy_spread(exp.retrain["test_acc"]))
    parts: list[RenderableType] = [f"[bold]test accuracy[/]: {retrained_text(exp)}", table]
    if comparable(exp):
        for model, accuracy in REPORT_TEST_ACC.items():
            table.add_row(model, percent(accuracy))
    else:
        parts.append(not_comparable_text())
    return Group(*parts)


def report_accuracies() -> str:
    """'report: with augmentation 92.74%, report: baseline 88.50%': the figures to beat."""
    return ", ".join(f"{name} {percent(acc)}" for name, acc in REPORT_TEST_ACC.items())


def per_class_table(exp: Experiment) -> Table:
    table = _table("per class, on the test set (first seed)")
    for header in ("class", "precision", "recall", "f1", "support"):
        table.add_column(header, justify="left" if header == "class" else "right", no_wrap=True)
    for _, row in exp.per_class.iterrows():
        table.add_row(row["class"], percent(row["precision"]), percent(row["recall"]), percent(row["f1"]), f"{row['support']:,}")
    return table


def trial_view(exp: Experiment, trial_id: str) -> Group:
    """One trial in full: its results, every config field, every epoch."""
    rows = exp.trials[exp.trials["trial_id"] == trial_id]
    if rows.empty:
        some = ", ".join(_top(exp, TOP)["trial_id"]) or "none"
        raise ValueError(f"trial={trial_id!r}: not a trial of {exp.path} (the top ones: {some})")
    trial = rows.iloc[0]
    results = Table.grid(padding=(0, 2))
    results.add_column(style="bold", no_wrap=True)
    results.add_column(overflow="fold")  # a path too long for the line is folded, never cut
    for key, value in {
        "trial": f"{trial_id} of {exp.path}",
        "status": f"{trial['status']} after {trial['epochs_run']} of {exp.run['max_epochs']} epochs",
        "val acc": f"best {percent(trial['best_val_acc'])}, last {percent(trial['last_val_acc'])}",
        "val loss": f"best {loss(trial['best_val_loss'])}, last {loss(trial['last_val_loss'])}",
        "network": f"{_thousands(trial['params'])} parameters",
        "time": f"{trial['seconds']:,.0f} s, {_thousands(trial['images_per_second'])} images/s, "
        f"on {'-' if missing(trial['node']) else trial['node']}",  # none: the trial reported no epoch
    }.items():
        results.add_row(key, value)
    config = Table.grid(padding=(0, 2))
    for style in ("bold", None, "bold", None):
        config.add_column(style=style, no_wrap=True)
    names = list(CONFIG_COLUMNS)
    half = (len(names) + 1) // 2
    for left, right in zip(names[:half], [*names[half:], None]):
        config.add_row(left, number(trial[left]), right or "", number(trial[right]) if right else "")
    epochs = _table("epochs")
    for header in ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds", "img/s"):
        epochs.add_column(header, justify="right", no_wrap=True)
    for _, e in exp.epochs[exp.epochs["trial_id"] == trial_id].iterrows():
        epochs.add_row(
            str(e["epoch"]), loss(e["train_loss"]), percent(e["train_acc"]), loss(e["val_loss"]),
            percent(e["val_acc"]), number(e["lr"]), f"{e['seconds']:.1f}", f"{e['images_per_second']:,.0f}",
        )
    return Group(results, "", "[bold]config[/]", config, "", epochs)


def _thousands(value: float | None) -> str:
    """786890 -> '786,890'."""
    return "-" if missing(value) else f"{value:,.0f}"


def side_by_side(experiments: list[Experiment]) -> Fitted:
    """One column per experiment (named by folder), as many per table as fit; several tables when
    they do not all fit."""
    rows = _comparison_rows(experiments)

    def build(k: int) -> Table:
        per_table = max(k, 1)
        tables = []
        for start in range(0, len(experiments), per_table):
            chunk = slice(start, start + per_table)
            table = _table("experiments side by side" if start == 0 else None)
            table.add_column("")
            for exp in experiments[chunk]:
                table.add_column(exp.name, justify="right", no_wrap=True)
            for label, cells in rows.items():
                table.add_row(label, *cells[chunk])
            tables.append(table)
        return tables[0] if len(tables) == 1 else _stack(tables)

    return Fitted(build, len(experiments))


def _stack(tables: list[Table]) -> Table:
    """Tables one below the other, measured as the widest of them."""
    grid = Table.grid()
    for table in tables:
        grid.add_row(table)
    return grid


def _comparison_rows(experiments: list[Experiment]) -> dict[str, list[str]]:
    def each(cell: Callable[[Experiment], str], searched_only: bool = True) -> list[str]:
        return [cell(exp) if exp.searched or not searched_only else "-" for exp in experiments]

    rows = {
        "space": each(lambda e: e.run["space"]),
        "width": each(lambda e: f"{e.run.get('width', 1.0):g}"),  # a rehearsal at 0.125 is not the full network
        "budget": each(lambda e: e.run["budget"] + ("" if run_kind(e.run) == "search" else f" ({run_kind(e.run)})")),
        "trials x epochs": each(lambda e: f"{e.run['trials']} x {e.run['max_epochs']}"),
        **{status: each(lambda e, s=status: str(e.status_counts().get(s, 0))) for status in ("completed", "pruned", "error", "unfinished")},
        "trial-hours": each(lambda e: _hours(e.trials["seconds"].sum())),
        "device-hours": each(device_hours),  # a CPU search's are CPU-hours, not 0 GPU-hours
        "best val acc": each(lambda e: percent(e.best["metrics"]["val_acc"]) if e.best else "-"),
        "best trial": each(lambda e: e.best["trial_id"] if e.best else "-"),
        "best at epoch": each(lambda e: f"{e.best['metrics']['epoch']} of {e.run['max_epochs']}" if e.best else "-"),
        "retrain": each(lambda e: e.winner["source"] if e.winner else "-", searched_only=False),
        "retrain images": each(lambda e: f"{e.winner['train_images']:,}" if e.winner else "-", searched_only=False),
        "test acc": each(lambda e: accuracy_spread(e.retrain["test_acc"]), searched_only=False),
    }
    best_configs = pd.DataFrame([exp.best["config"] if exp.best else {} for exp in experiments], columns=list(CONFIG_COLUMNS))
    found = best_configs[[exp.best is not None for exp in experiments]]
    for name in [n for n in CONFIG_COLUMNS if found[n].nunique(dropna=False) > 1]:
        rows[f"best {name}"] = [number(value) for value in best_configs[name]]
    return rows


def status_text(exp: Experiment) -> str:
    counts = exp.status_counts()
    return f"{len(exp.trials)}: " + (", ".join(f"{n} {status}" for status, n in counts.items()) or "none")


def compute_text(exp: Experiment) -> str:
    """Trial hours (epoch time summed over trials) and device-hours, as the search's end counted them."""
    return f"{_hours(exp.trials['seconds'].sum())} trial-hours, {device_hours(exp)}-hours"


def device_hours(exp: Experiment) -> str:
    """'0.25 GPU': each trial's time x its GPUs; x its CPUs ('0.0033 CPU') for a search whose
    trials held no GPU."""
    seconds, gpus = exp.trials["seconds"], exp.trials["gpus_per_trial"]
    unit, held = ("GPU", gpus) if (gpus > 0).any() else ("CPU", exp.trials["cpus_per_trial"])
    return f"{_hours((seconds * held).sum())} {unit}"


def _hours(seconds: float) -> str:
    """Hours to two decimals, or two significant digits below 0.01 (a smoke search is not 0.00)."""
    hours = seconds / 3600
    return f"{hours:.2f}" if hours >= 0.01 or hours == 0 else f"{hours:.2g}"


def best_text(exp: Experiment) -> str:
    """'80.00% val acc at epoch 27 of 30, trial 0a1b2c3d (completed)': of the search's max_epochs, so a
    pruned best reads 'at epoch 3 of 30', not 'of 3' (the epochs it ran)."""
    if exp.best is None:  # the best is among the trials that ended (results.status.ranked)
        return "no trial has ended with a result yet" if (exp.trials["epochs_run"] > 0).any() else "no trial reported a result"
    metrics = exp.best["metrics"]
    return (
        f"{percent(metrics['val_acc'])} val acc at epoch {metrics['epoch']} of {exp.run['max_epochs']}, "
        f"trial {exp.best['trial_id']} ({exp.best['status']})"
    )


def accuracy_spread(accuracies: pd.Series) -> str:
    """'93.10% ± 0.15%' (sample standard deviation over seeds), one value alone, or '-' for none."""
    if accuracies.empty:
        return "-"
    if len(accuracies) == 1:
        return percent(accuracies.iloc[0])
    return f"{percent(accuracies.mean())} ± {percent(accuracies.std())}"


def show(experiments: list[Experiment], console: Console, trial: str | None = None, all_columns: bool = False) -> None:
    if len(experiments) > 1:
        console.print(side_by_side(experiments))
        return
    exp = experiments[0]
    if trial is not None:
        console.print(trial_view(exp, trial))
        return
    parts: list[RenderableType] = []
    front = "the Pareto front"  # a placeholder among the parts: print_pareto prints it
    if exp.searched:
        parts += [summary_table(exp), importance_table(exp), all_columns_table(exp) if all_columns else top_trials_table(exp)]
        if multi_objective(exp):
            parts.append(front)
    else:
        parts.append(f"[bold]{exp.path}[/]: a retrain only, no search")
    if not exp.retrain.empty:
        parts.append(retrain_table(exp))
    if not exp.per_class.empty:
        parts.append(per_class_table(exp))
    for part in parts:
        if part is front:
            print_pareto(console, exp)
        else:
            console.print(part)
        console.print()
    if exp.searched and not exp.trials.empty:
        if multi_objective(exp):
            console.print(pareto_figure_text(exp), markup=False, highlight=False)
        console.print(figure_text(exp), markup=False, highlight=False)


SEARCH_FIGURE = "search.png"  # in the report folder, beside the tables it is drawn from
PARETO_FIGURE = "pareto.png"


def figure_text(exp: Experiment) -> str:
    """Write the search's figure into its report folder; the line that names it (or says why not)."""
    from results import figures  # here: matplotlib takes a second to import, and only this view draws

    fig = figures.search_figure(exp.trials, exp.epochs, exp.importance, exp.run, title=f"{exp.name}: {counted(len(exp.trials), 'trial')} ("
                                  + ", ".join(f"{n} {status}" for status, n in exp.status_counts().items()) + ")")
    return _written(figures.png(fig), join(exp.path, REPORT_FOLDER, SEARCH_FIGURE), "figure")


def pareto_figure_text(exp: Experiment) -> str:
    """Write the Pareto front's figure (every trial behind it) into the report folder; the line that names it."""
    from results import figures

    cost = names(exp.objective)[1]
    if not (exp.trials[cost].notna() & exp.trials["last_val_acc"].notna()).any():  # a log axis of nothing fails
        return "Pareto front figure: not drawn, as no trial has reported an epoch"
    fig = figures.pareto_figure(exp.trials, exp.pareto, cost, title=f"{exp.name}: Pareto front of val acc against {cost}")
    return _written(figures.png(fig), join(exp.path, REPORT_FOLDER, PARETO_FIGURE), "Pareto front figure")


def _written(data: bytes, path: str, what: str) -> str:
    try:
        write_bytes(data, path)
    except OSError as error:  # a folder this user may only read: the tables above are what was asked for
        return f"{what} not written to {path}: {' '.join(str(error).split())}"
    return f"{what}: {path}"


def main(argv: list[str]) -> int:
    if overrides.wants_help(argv):
        print(overrides.usage(__doc__))
        return 0
    paths = [arg for arg in argv if "=" not in arg]
    if not paths or any(path.startswith("-") for path in paths):
        print(f"{USAGE} (a folder: runs/NAME, or a URI; --help for more)", file=sys.stderr)
        return 2
    try:
        paths = [expand_home(path) for path in paths]
        args = overrides.parse([arg for arg in argv if "=" in arg], KEYS)
        if args.get("columns", "all") != "all":
            raise ValueError(f"columns={args['columns']!r}: the only choice is all")
        if len(paths) > 1 and args:
            raise ValueError(f"{' and '.join(f'{key}=' for key in args)} applies to one experiment; give one folder")
        if "trial" in args and "columns" in args:  # one trial's view already holds its every hyperparameter
            raise ValueError("trial= and columns=all: give one; trial=ID shows that trial's every hyperparameter")
        experiments = [load(path) for path in paths]
        for exp in (e for e in experiments if e.searched):  # a retrain-only folder has no run.json
            lacking = [key for key in RUN_FIELDS if key not in exp.run]
            if lacking:
                raise ValueError(f"{join(exp.path, RUN_FILE)} lacks {', '.join(lacking)}: not a run.json written by search.run")
        if "trial" in args and not experiments[0].searched:
            raise ValueError(f"trial={args['trial']}: {paths[0]} holds a retrain only, no trials")
        console = wide_console()
        show(experiments, console, trial=args.get("trial"), all_columns="columns" in args)
    except ValueError as error:
        return overrides.reject(error)
    return 0


if __name__ == "__main__":
    overrides.command(main)
