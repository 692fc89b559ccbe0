"""`results.load(path)`: an experiment's report and winner tables as DataFrames, without Ray.

    exp = results.load("runs/NAME")           # or a URI: "s3://bucket/runs/NAME"
    exp.trials.sort_values("best_val_acc")    # one row per trial (schema TRIALS)
    exp.best["config"]                        # the winner's flat config, for Config.from_flat
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from results.schema import (
    REPORT_FOLDER,
    REPORT_TABLES,
    STATUSES,
    WINNER_FOLDER,
    WINNER_TABLES,
    empty_frame,
    file_type,
    is_file,
    join,
    read_json,
    read_table,
)


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames do not compare to a single bool
class Experiment:
    path: str  # as given: a local path or a URI
    run: dict[str, Any]  # run.json, written by search.run
    best: dict[str, Any] | None  # best.json; None when no trial reported a result
    trials: pd.DataFrame  # schema TRIALS
    epochs: pd.DataFrame  # schema EPOCHS
    # The retrain of the winner ({path}/winner/); no rows until it has run.
    retrain: pd.DataFrame  # schema RETRAIN
    retrain_epochs: pd.DataFrame  # schema RETRAIN_EPOCHS
    per_class: pd.DataFrame  # schema PER_CLASS
    confusion: pd.DataFrame  # schema CONFUSION

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def status_counts(self) -> dict[str, int]:
        """{status: number of trials}, in STATUSES order, without the statuses no trial has."""
        counts = self.trials["status"].value_counts()
        return {status: int(counts[status]) for status in STATUSES if status in counts}


def load(experiment: str | os.PathLike) -> Experiment:
    """The experiment at `experiment`; ValueError when it is missing or has no report yet."""
    path = os.fspath(experiment)
    run = read_run(path)
    report = join(path, REPORT_FOLDER)
    if not is_file(join(report, "best.json")):  # results.collect writes best.json last
        raise ValueError(f"{path} has no report; run python -m results.collect {path}")
    report_tables = {name: read_table(join(report, f"{name}.parquet"), schema) for name, schema in REPORT_TABLES.items()}
    winner_tables = {}
    for name, schema in WINNER_TABLES.items():
        file = join(path, WINNER_FOLDER, f"{name}.parquet")
        winner_tables[name] = read_table(file, schema) if is_file(file) else empty_frame(schema)
    return Experiment(path=path, run=run, best=read_json(join(report, "best.json")), **report_tables, **winner_tables)


def read_run(path: str) -> dict[str, Any]:
    """run.json of the experiment at `path`; ValueError when the folder or the file is missing."""
    kind = file_type(path)
    if kind == pafs.FileType.NotFound:
        raise ValueError(f"{path} does not exist")
    if kind != pafs.FileType.Directory:
        raise ValueError(f"{path} is not a folder")
    if not is_file(join(path, "run.json")):
        raise ValueError(f"{path} has no run.json, so it is not an experiment written by search.run")
    return read_json(join(path, "run.json"))
