"""`results.load(path)`: an experiment's report and winner tables as DataFrames, without Ray.

    exp = results.load("runs/NAME")           # or a URI: "s3://bucket/runs/NAME"
    exp.trials.sort_values("best_val_acc")    # one row per trial (schema TRIALS_WITH_LATENCY)
    exp.best["config"]                        # the winner's flat config, for Config.from_flat
    exp.importance                            # hyperparameters by importance (results.importance)
    exp.pareto                                # the trials no other trial beats on every objective

A folder that only holds a retrain (`search.retrain runs/NAME config=baseline`: winner/ and no
run.json) loads too, with no trials.
"""

from __future__ import annotations

import io
import os
import posixpath
import shlex
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from results.importance import importance
from results.pareto import DEFAULT_OBJECTIVE, front
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
    locate,
    reachable_type,
    read_json,
    read_table,
)

RUN_FILE = "run.json"  # written by search.run: what makes a folder a search


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames do not compare to a single bool
class Experiment:
    path: str  # as given: a local path or a URI
    run: dict[str, Any]  # run.json, written by search.run; empty for a folder with only a retrain
    best: dict[str, Any] | None  # best.json; None when no trial reported a result
    trials: pd.DataFrame  # schema TRIALS_WITH_LATENCY (latencies empty where the search measured none)
    epochs: pd.DataFrame  # schema EPOCHS
    # The retrain ({path}/winner/); no rows until it has run.
    retrain: pd.DataFrame  # schema RETRAIN
    retrain_epochs: pd.DataFrame  # schema RETRAIN_EPOCHS
    per_class: pd.DataFrame  # schema PER_CLASS
    confusion: pd.DataFrame  # schema CONFUSION
    # winner/model.pt's metadata: what was retrained ("source"), on how many images
    # ("train_images"), for how many epochs ("epochs"); None until a retrain has run.
    winner: dict[str, Any] | None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def searched(self) -> bool:
        """False for a folder that holds only a retrain (of a preset), no search."""
        return bool(self.run)

    def status_counts(self) -> dict[str, int]:
        """{status: number of trials}, in STATUSES order, without the statuses no trial has."""
        counts = self.trials["status"].value_counts()
        return {status: int(counts[status]) for status in STATUSES if status in counts}

    @property
    def objective(self) -> str:
        """What the search optimised (results.pareto.OBJECTIVES); val_acc for a search recorded before objective=."""
        return self.run.get("objective", DEFAULT_OBJECTIVE)

    @cached_property
    def pareto(self) -> pd.DataFrame:
        """The Pareto front: the completed trials that no other completed trial beats on every
        objective of the search (results.pareto.front; rows of `trials`), most accurate first. For
        a search of val_acc alone, the completed trial(s) with the highest last val_acc: best.json's
        trial, and any that tie with it."""
        return front(self.trials, self.objective)

    @cached_property
    def importance(self) -> pd.DataFrame:
        """The varying hyperparameters, most important first: columns parameter, importance (sum 1)."""
        return importance(self.trials)


def load(experiment: str | os.PathLike) -> Experiment:
    """The experiment at `experiment`; ValueError when it is missing or has no report yet."""
    path = os.fspath(experiment)
    _check_folder(path)
    winner = join(path, WINNER_FOLDER)
    retrained = file_type(winner) == pafs.FileType.Directory
    if retrained and not is_file(join(path, RUN_FILE)):
        run, best, report_tables = {}, None, {name: empty_frame(schema) for name, schema in REPORT_TABLES.items()}
    else:
        run = read_run(path)
        report = join(path, REPORT_FOLDER)
        if not is_file(join(report, "best.json")):  # results.collect writes best.json last
            # A search still running has none either: collecting it now would race the search's own report.
            raise ValueError(f"{path} has no report yet: a search writes it as it ends; for one that was killed, "
                             f"python -m results.collect {shlex.quote(path)} makes it from Tune's files")
        rebuild = (f"python -m results.collect {shlex.quote(path)} rebuilds the report from Tune's files, unless an "
                   "older version of this service wrote them")
        missing = [f"{REPORT_FOLDER}/{name}.parquet" for name in REPORT_TABLES if not is_file(join(report, f"{name}.parquet"))]
        if missing:  # a copy cut short, a file removed by hand
            raise ValueError(f"{path}: the report has no {' or '.join(missing)}; {rebuild}")
        try:
            best = read_json(join(report, "best.json"))
            report_tables = {name: read_table(join(report, f"{name}.parquet"), schema) for name, schema in REPORT_TABLES.items()}
        except ValueError as error:  # damaged, or written by another version: collect writes it anew
            raise ValueError(f"{error}; {rebuild}") from None
    winner_tables = {}
    for name, schema in WINNER_TABLES.items():
        file = join(winner, f"{name}.parquet")
        winner_tables[name] = read_table(file, schema) if is_file(file) else empty_frame(schema)
    return Experiment(path=path, run=run, best=best, **report_tables, **winner_tables, winner=_winner_metadata(winner))


# What the readers take from run.json (results.show, results.collect, results.figures), by type:
# read_run refuses another type; results.show, which shows them all, refuses a run.json without one.
RUN_FIELDS = {"space": str, "budget": str, "trials": int, "max_epochs": int, "grace": int, "eta": int,
              "concurrency": int, "val_size": int, "cpus_per_trial": (int, float), "gpus_per_trial": (int, float)}
RUN_FIELDS_ADDED = {"subset": (int, type(None)), "width": (int, float)}  # absent from older run.json files
MADE_BY, RECORDER = "made_by", "search.replay.record"  # run.json's mark of a record: never resumed as a search


def run_kind(run: dict[str, Any]) -> str:
    """'search', 'replay' (replay=: recorded curves answered its trials, nothing trained) or 'record'
    (search.replay.record: every trial to max_epochs, no early stopping)."""
    if run.get(MADE_BY) == RECORDER:
        return "record"
    return "replay" if run.get("replay") else "search"


def read_run(path: str) -> dict[str, Any]:
    """run.json of the experiment at `path`; ValueError when the folder or the file is missing, or
    the file is not the object search.run writes (a list, a value of RUN_FIELDS of another type:
    a file edited by hand, or damaged)."""
    _check_folder(path)
    file = join(path, RUN_FILE)
    if not is_file(file):
        raise ValueError(f"{path} has no {RUN_FILE}, so it is not an experiment written by search.run")
    run = read_json(file)
    if not isinstance(run, dict) or not run:  # {} would read as a folder with a retrain only
        raise ValueError(f"{file}: expected the JSON object search.run writes, found {type(run).__name__ if run else 'an empty one'}")
    for key, kind in {**RUN_FIELDS, **RUN_FIELDS_ADDED}.items():
        if key in run and (not isinstance(run[key], kind) or isinstance(run[key], bool)):
            raise ValueError(f"{file}: {key}={run[key]!r} is not what search.run writes there")
    return run


def _check_folder(path: str) -> None:
    if not path.strip():  # "" would be the working directory
        raise ValueError("the experiment folder is empty; give one such as runs/NAME (or a URI)")
    kind = reachable_type(path, path)
    if kind == pafs.FileType.NotFound:
        raise ValueError(f"{path} does not exist")
    if kind != pafs.FileType.Directory:
        raise ValueError(f"{path} is not a folder")


def _winner_metadata(winner: str) -> dict[str, Any] | None:
    """The metadata search.retrain stores in winner/model.pt (model.export's format)."""
    file = join(winner, "model.pt")
    if not is_file(file):
        return None
    import torch  # here, not above: only a retrained experiment pays for importing torch (seconds)

    fs, inner = locate(file)
    with fs.open_input_file(inner) as stream:
        payload = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
    return payload["metadata"]
