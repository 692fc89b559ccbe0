"""`python -m results.collect runs/NAME`: a Tune experiment folder -> its report as Parquet + JSON.

Writes into {experiment}/report/:
  trials.parquet  one row per trial, every trial exactly once (schema TRIALS;
                  TRIALS_WITH_LATENCY when the search measured latencies)
  epochs.parquet  one row per trial and epoch (schema EPOCHS); a resumed
                  trial's repeated epochs keep the last
  best.json       the best trial by results.status.ranked (last epoch's
                  validation accuracy, completed first): {"trial_id",
                  "status", "config", "metrics": {"val_acc", "val_loss",
                  "epoch", "epochs_run"}}; null when no trial reported

Trial statuses come from Tune's experiment state, so they are right after Ctrl-C, a killed
driver and Tuner.restore; results.status turns them into completed, pruned, error or unfinished.
A result file may end in a torn line (its writer was killed mid-line): that line is dropped and
counted. A malformed line anywhere else means a damaged file, and collect refuses it.
Reads local paths and URIs; needs no running Ray.
"""

from __future__ import annotations

from model import overrides

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM while Ray Tune imports ends in one line
    overrides.starting()

import fnmatch
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from ray.tune import ExperimentAnalysis

from internals import EXPERIMENT_ANALYSIS_LOGGER, trial_folder
from model.config import Config
from results.load import load, read_run
from results.numbers import counted
from results.schema import (
    CONFIG_COLUMNS,
    EPOCHS,
    REPORT_FOLDER,
    LATER_COLUMNS,
    TRIALS,
    TRIALS_WITH_LATENCY,
    empty_frame,
    expand_home,
    join,
    locate,
    write_json,
    write_table,
)
from results.status import ranked, trial_status

EPOCH_METRICS = tuple(name for name in EPOCHS.names if name != "trial_id")
REPORTED_KEYS = (*EPOCH_METRICS, "params")  # what search.run's trainable reports every epoch
ACCURACIES = ("train_acc", "val_acc")


@dataclass(frozen=True)
class Collected:
    report: str  # the report folder
    torn: tuple[str, ...]  # trials whose result file ended in a torn line, which was dropped


def collect(experiment: str | os.PathLike) -> Collected:
    """Write `experiment`'s report (see the module docstring)."""
    path = os.fspath(experiment)
    run = read_run(path)
    trials, epochs, torn = [], [], []
    for trial in _tune_trials(path):
        history, dropped = _history(trial)
        if dropped:
            torn.append(trial.trial_id)
        trials.append(_trial_row(trial, history, run))
        if len(history):
            epochs.append(history[list(EPOCH_METRICS)].assign(trial_id=trial.trial_id))
    trials_frame = pd.DataFrame(trials, columns=TRIALS_WITH_LATENCY.names)
    trials_schema = TRIALS_WITH_LATENCY if trials_frame[list(LATER_COLUMNS)].notna().any(axis=None) else TRIALS
    epochs_frame = pd.concat(epochs, ignore_index=True)[EPOCHS.names] if epochs else empty_frame(EPOCHS)
    best = _best(trials_frame, epochs_frame)
    report = join(path, REPORT_FOLDER)
    write_table(epochs_frame, join(report, "epochs.parquet"), EPOCHS)
    write_table(trials_frame[trials_schema.names], join(report, "trials.parquet"), trials_schema)
    write_json(best, join(report, "best.json"))  # last: its presence means the report is complete
    return Collected(report, tuple(torn))


def has_tune_snapshot(path: str) -> bool:
    """Whether Tune has saved the experiment at `path` (experiment_state-*.json, written with the
    searcher's and search generator's states): what Tuner.restore continues from."""
    fs, inner = locate(path)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return False
    names = [info.base_name for info in fs.get_file_info(pafs.FileSelector(inner))]
    return bool(fnmatch.filter(names, "experiment_state-*.json"))


def _tune_trials(path: str) -> list:
    fs, inner = locate(path)
    if not has_tune_snapshot(path):
        raise ValueError(f"{path} is not a Ray Tune experiment folder (it has no experiment_state-*.json)")
    with reading_tune_state(path, "its report tables, where they are readable, are what is left"), _without_fetch_warnings():
        analysis = ExperimentAnalysis(inner, storage_filesystem=fs)
    return sorted(analysis.trials, key=lambda trial: trial.trial_id)  # ids count up in creation order


class OlderExperiment(ValueError):
    """An experiment whose pickled Tune state names code this checkout no longer has (a module or a
    class that moved since it was written): one line, saying what is left (`then`)."""


@contextmanager
def reading_tune_state(path: str, then: str) -> Iterator[None]:
    """Around whatever unpickles the Tune state of the experiment at `path` (a collect, a restore)."""
    try:
        yield
    except (ImportError, AttributeError) as e:  # what unpickling raises for a module or class that is gone
        raise OlderExperiment(f"{path} was written by an older version of this service, whose Tune state this "
                              f"one cannot read ({e}): {then}") from None


@contextmanager
def _without_fetch_warnings() -> Iterator[None]:
    """ExperimentAnalysis also reads every trial's history and warns about the result files it
    cannot read (none yet, or a torn line); _history reads them itself and says what it drops."""
    log = logging.getLogger(EXPERIMENT_ANALYSIS_LOGGER)

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics")

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def _history(trial) -> tuple[pd.DataFrame, bool]:
    """(the trial's reported rows, one per epoch, in epoch order; whether a torn last line was dropped)."""
    fs, folder = trial_folder(trial)
    result_file = f"{folder}/result.json"
    if fs.get_file_info(result_file).type != pafs.FileType.File:
        return pd.DataFrame(columns=REPORTED_KEYS), False
    with fs.open_input_stream(result_file) as stream:
        rows, torn = parse_result_lines(stream.readall().decode(errors="replace"), result_file)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=REPORTED_KEYS), torn
    missing = [key for key in REPORTED_KEYS if key not in frame.columns]
    if missing:
        raise ValueError(f"{result_file} lacks {', '.join(missing)}; trials must report the metrics of search.run's trainable")
    history = latest_epochs(frame)
    for name in ACCURACIES:
        history[name] = history[name].map(decimal_of_float32)
    return history, torn


def decimal_of_float32(value: float) -> float:
    """An accuracy that a float32 mean made (trainers before hits / images: 0.7360000014305115 for 736
    of 1,000) as the decimal it stands for (0.736), so that a query for 0.736 finds it; any value
    that is not exactly a float32 (hits / images in float64 is not, unless it is a short binary
    fraction such as 0.75, which reads the same either way) as it is."""
    single = np.float32(value)
    return float(str(single)) if float(single) == value else value


def parse_result_lines(text: str, where: str) -> tuple[list[dict[str, Any]], bool]:
    """(the rows of a result file, whether its last line was torn and dropped). A writer killed
    mid-line leaves a last line without its newline; any other line that is not JSON means a
    damaged file: ValueError naming it."""
    lines = text.split("\n")
    ends_cleanly = lines[-1] == ""  # the text ended with a newline (or is empty)
    if ends_cleanly:
        lines.pop()
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not ends_cleanly:
                return rows, True
            raise ValueError(f"{where}: line {number} is not JSON ({error}); only a torn last line is skipped") from None
    return rows, False


def latest_epochs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch from a trial's rows in the order they were written, resumes included.

    A resumed trial repeats the epochs after its checkpoint: the latest row of each epoch wins.
    Epochs past the last row's were run by an attempt that a restore rolled back: dropped."""
    rows = rows[rows["epoch"] <= rows["epoch"].iloc[-1]]
    return rows.drop_duplicates("epoch", keep="last").sort_values("epoch", ignore_index=True)


def _trial_row(trial, history: pd.DataFrame, run: dict[str, Any]) -> dict[str, Any]:
    missing = [name for name in CONFIG_COLUMNS if name not in trial.config]
    if missing:
        raise ValueError(f"trial {trial.trial_id}'s config lacks {', '.join(missing)}; give every trial Config.to_flat()")
    ran = len(history) > 0
    return {
        "trial_id": trial.trial_id,
        "status": trial_status(trial.status, len(history), run["max_epochs"]),
        "epochs_run": len(history),
        "best_val_acc": history["val_acc"].max() if ran else float("nan"),
        "last_val_acc": history["val_acc"].iloc[-1] if ran else float("nan"),
        "best_val_loss": history["val_loss"].min() if ran else float("nan"),
        "last_val_loss": history["val_loss"].iloc[-1] if ran else float("nan"),
        "params": history["params"].iloc[-1] if ran else None,
        # Reported with every epoch by a search that measures them (objective=val_acc,latency_ms).
        **{name: history[name].iloc[-1] if ran and name in history else float("nan") for name in LATER_COLUMNS},
        "seconds": float(history["seconds"].sum()),
        "images_per_second": history["images_per_second"].mean() if ran else float("nan"),
        "node": history["node"].iloc[-1] if ran else None,  # where its last epoch ran
        "cpus_per_trial": run["cpus_per_trial"],
        "gpus_per_trial": run["gpus_per_trial"],
        **{name: trial.config[name] for name in CONFIG_COLUMNS},
    }


def _best(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Any] | None:
    """The first of results.status.ranked among the trials that reported; its last epoch's metrics."""
    reported = ranked(trials[trials["epochs_run"] > 0])
    if reported.empty:
        return None
    winner = reported.iloc[0]
    last = epochs[epochs["trial_id"] == winner["trial_id"]].sort_values("epoch").iloc[-1]
    return {
        "trial_id": winner["trial_id"],
        "status": winner["status"],
        # Through Config: plain Python scalars, and a config that Config.from_flat reads back as is.
        "config": Config.from_flat({name: winner[name] for name in CONFIG_COLUMNS}).to_flat(),
        "metrics": {
            "val_acc": float(last["val_acc"]),
            "val_loss": float(last["val_loss"]),
            "epoch": int(last["epoch"]),
            "epochs_run": int(winner["epochs_run"]),
        },
    }


def main(argv: list[str]) -> int:
    if overrides.wants_help(argv):
        print(overrides.usage(__doc__))
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m results.collect EXPERIMENT_FOLDER (e.g. runs/NAME, or a URI)", file=sys.stderr)
        return 2
    try:
        folder = expand_home(argv[0])
        collected = collect(folder)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = load(folder).status_counts()
    print(f"{counted(sum(counts.values()), 'trial')} ({', '.join(f'{n} {status}' for status, n in counts.items())}); report in {collected.report}")
    if collected.torn:
        print(f"dropped the torn last line of {counted(len(collected.torn), 'result file')} (trials {', '.join(collected.torn)})")
    return 0


if __name__ == "__main__":
    overrides.command(main)
