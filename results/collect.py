"""`python -m results.collect runs/NAME`: a Tune experiment folder -> its report as Parquet + JSON.

Writes into {experiment}/report/:
  trials.parquet  one row per trial (schema TRIALS), every trial exactly once
  epochs.parquet  one row per trial and epoch (schema EPOCHS); a resumed trial's repeats keep the last
  best.json       the best trial by best_val_acc among completed trials (else among all with results),
                  {"trial_id", "status", "config", "metrics": {"val_acc", "val_loss", "epoch", "epochs_run"}};
                  null when no trial reported anything

Trial statuses come from Tune's experiment state, so they are right after Ctrl-C, a killed
driver and Tuner.restore: ERROR -> error; TERMINATED after run.json's max_epochs -> completed;
TERMINATED earlier -> pruned (ASHA stopped it); PENDING/RUNNING/PAUSED -> unfinished.
Reads local paths and URIs; needs no running Ray.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import sys
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from model.config import Config
from results.load import load, read_run
from results.schema import (
    CONFIG_COLUMNS,
    EPOCHS,
    REPORT_FOLDER,
    TRIALS,
    empty_frame,
    join,
    locate,
    write_json,
    write_table,
)

EPOCH_METRICS = tuple(name for name in EPOCHS.names if name != "trial_id")
REPORTED_KEYS = (*EPOCH_METRICS, "params")  # what search.run's trainable reports every epoch


def trial_status(tune_status: str, epochs_run: int, max_epochs: int) -> str:
    """One of STATUSES from Tune's trial status and the epochs the trial got through."""
    if tune_status == "ERROR":
        return "error"
    if tune_status == "TERMINATED":
        return "completed" if epochs_run >= max_epochs else "pruned"
    return "unfinished"  # PENDING, RUNNING or PAUSED: the search was interrupted


def collect(experiment: str | os.PathLike) -> str:
    """Write `experiment`'s report (see the module docstring); returns the report folder."""
    path = os.fspath(experiment)
    run = read_run(path)
    trials, epochs = [], []
    for trial in _tune_trials(path):
        history = _history(trial)
        trials.append(_trial_row(trial, history, run))
        if len(history):
            epochs.append(history[list(EPOCH_METRICS)].assign(trial_id=trial.trial_id))
    trials_frame = pd.DataFrame(trials, columns=TRIALS.names)
    epochs_frame = pd.concat(epochs, ignore_index=True)[EPOCHS.names] if epochs else empty_frame(EPOCHS)
    best = _best(trials_frame, epochs_frame)
    report = join(path, REPORT_FOLDER)
    write_table(epochs_frame, join(report, "epochs.parquet"), EPOCHS)
    write_table(trials_frame, join(report, "trials.parquet"), TRIALS)
    write_json(best, join(report, "best.json"))  # last: its presence means the report is complete
    return report


def _tune_trials(path: str) -> list:
    from ray.tune import ExperimentAnalysis  # here: importing Ray costs about a second

    fs, inner = locate(path)
    names = [info.base_name for info in fs.get_file_info(pafs.FileSelector(inner))]
    if not fnmatch.filter(names, "experiment_state-*.json"):
        raise ValueError(f"{path} is not a Ray Tune experiment folder (it has no experiment_state-*.json)")
    # ExperimentAnalysis also reads every trial's history, and warns about trials with no result
    # file (pending ones, or a killed driver's unflushed ones); _history reads them itself.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = ExperimentAnalysis(inner, storage_filesystem=fs)
    return sorted(analysis.trials, key=lambda trial: trial.trial_id)  # ids count up in creation order


def _history(trial) -> pd.DataFrame:
    """The trial's reported rows, one per epoch, in epoch order (no rows when it reported nothing)."""
    fs = trial.storage.storage_filesystem
    result_file = f"{trial.storage.trial_fs_path}/result.json"
    if fs.get_file_info(result_file).type != pafs.FileType.File:
        return pd.DataFrame(columns=REPORTED_KEYS)
    with fs.open_input_stream(result_file) as stream:
        rows = [_parse(line) for line in stream.readall().decode().splitlines()]
    frame = pd.DataFrame([row for row in rows if row is not None])
    if frame.empty:
        return pd.DataFrame(columns=REPORTED_KEYS)
    missing = [key for key in REPORTED_KEYS if key not in frame.columns]
    if missing:
        raise ValueError(f"{result_file} lacks {', '.join(missing)}; trials must report the metrics of search.run's trainable")
    return latest_epochs(frame)


def _parse(line: str) -> dict[str, Any] | None:
    # A driver killed mid-write leaves half a line, which a resume then continues on: skip it.
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


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
        "seconds": float(history["seconds"].sum()),
        "images_per_second": history["images_per_second"].mean() if ran else float("nan"),
        "node": history["node"].iloc[-1] if ran else None,  # where its last epoch ran
        "cpus_per_trial": run["cpus_per_trial"],
        "gpus_per_trial": run["gpus_per_trial"],
        **{name: trial.config[name] for name in CONFIG_COLUMNS},
    }


def _best(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, Any] | None:
    reported = trials[trials["epochs_run"] > 0]
    if reported.empty:
        return None
    completed = reported[reported["status"] == "completed"]
    candidates = completed if not completed.empty else reported
    winner = candidates.loc[candidates["best_val_acc"].idxmax()]
    history = epochs[epochs["trial_id"] == winner["trial_id"]]
    best_epoch = history.loc[history["val_acc"].idxmax()]  # the first epoch that reached the best
    return {
        "trial_id": winner["trial_id"],
        "status": winner["status"],
        # Through Config: plain Python scalars, and a config that Config.from_flat reads back as is.
        "config": Config.from_flat({name: winner[name] for name in CONFIG_COLUMNS}).to_flat(),
        "metrics": {
            "val_acc": float(best_epoch["val_acc"]),
            "val_loss": float(best_epoch["val_loss"]),
            "epoch": int(best_epoch["epoch"]),
            "epochs_run": int(winner["epochs_run"]),
        },
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m results.collect EXPERIMENT_FOLDER (e.g. runs/NAME, or a URI)", file=sys.stderr)
        return 2
    try:
        report = collect(argv[0])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = load(argv[0]).status_counts()
    print(f"{sum(counts.values())} trials ({', '.join(f'{n} {status}' for status, n in counts.items())}); report in {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
