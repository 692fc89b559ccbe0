"""What a record of learning curves is: a folder with record.json and the usual report tables.

    RECORD/record.json              what produced the curves: space (its name, width and every
                                    domain), data, budget, machines, device, versions (search.replay.record)
    RECORD/report/trials.parquet    one row per trial (results.schema.TRIALS)
    RECORD/report/epochs.parquet    one row per trial and epoch (results.schema.EPOCHS)

An experiment folder written by `python -m search.replay.record` is a record as it stands; a copy of just
these three files (benchmarks/records/...) is one too. Only completed trials (trained to
max_epochs) are curves: the replay (search.replay.surrogate) never sees a partial one.

A record may be made with narrower networks than its space names (`width`): every channel count
in `filters` and `dense` is multiplied by it, so `full` at width 0.125 searches filters 4,8 ...
16,32 and dense 0, 16, 32, 64, at about 1/64 of the convolutions' cost.

A record carries its space: record.json keeps every domain ("params") as it was drawn from, and a
replayed search searches exactly that, whatever spaces/ says today, so that every proposal lies
where curves were recorded. The keys it did not vary take the values its trials were trained with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray import tune
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Uniform

import spaces
from model.config import preset
from results.schema import (CONFIG_COLUMNS, EPOCHS, REPORT_FOLDER, TRIALS, is_file, join, locate, reachable_type, read_json,
                            with_added_columns)
from search.settings import WIDTH_KEYS, narrowed

RECORD_FILE = "record.json"
# Records replayed together must agree on these: curves of different data, schedule lengths or
# devices do not mix.
COMPARABLE = ("space", "width", "params", "max_epochs", "subset", "val_size", "device")


def space_params(space: str, width: float) -> dict[str, Any]:
    """The space's PARAMS (Tune domains or fixed values) with channel counts times `width`. A
    channel count the space does not name is its preset's, narrowed too (as a fixed value): at
    width 0.125 space=augmentation trains the seed network at filters 8,16 and dense 32, not 64,128
    and 256."""
    module = spaces.get(space)
    params = dict(module.PARAMS)
    if width != 1:
        fixed = preset(module.PRESET).to_flat()
        params |= {key: fixed[key] for key in WIDTH_KEYS if key not in params}
    return narrowed(params, width)


# How record.json writes a space: {key: {"choice": [...]}, {"uniform": [low, high]}, ...}; "randint"
# and "lograndint" exclude high, as Tune's do; {"fixed": value} for a key the space does not vary.
_DOMAINS = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint,
            "lograndint": tune.lograndint}


def params_to_json(params: dict[str, Any]) -> dict[str, dict]:
    out = {}
    for key, value in params.items():
        if isinstance(value, Categorical):
            out[key] = {"choice": list(value.categories)}
        elif isinstance(value, (Float, Integer)) and isinstance(value.get_sampler(), (Uniform, LogUniform)):
            kind = ("log" if isinstance(value.get_sampler(), LogUniform) else "")
            kind += "uniform" if isinstance(value, Float) else "randint"
            out[key] = {kind: [value.lower, value.upper]}
        elif isinstance(value, Domain):
            raise ValueError(f"{key}: a record keeps choice, (log)uniform and (log)randint domains, not {value}")
        else:
            out[key] = {"fixed": value}
    return out


def params_from_json(recorded: dict[str, dict]) -> dict[str, Any]:
    out = {}
    for key, spec in recorded.items():
        ((kind, value),) = spec.items()
        out[key] = value if kind == "fixed" else tune.choice(value) if kind == "choice" else _DOMAINS[kind](*value)
    return out


def searched(params: dict[str, Any]) -> dict[str, Domain]:
    """The keys a search varies: the Tune domains among a space's PARAMS."""
    return {k: v for k, v in params.items() if isinstance(v, Domain)}


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames do not compare to a single bool
class Record:
    paths: tuple[str, ...]
    meta: tuple[dict, ...]  # each path's record.json
    trials: pd.DataFrame  # completed trials only; trial ids prefixed "r{i}-" when several records
    epochs: pd.DataFrame  # their epochs

    @property
    def space(self) -> str:
        return self.meta[0]["space"]

    @property
    def width(self) -> float:
        return self.meta[0]["width"]

    @property
    def max_epochs(self) -> int:
        return self.meta[0]["max_epochs"]

    @property
    def device(self) -> str:
        return self.meta[0]["device"]

    def params(self) -> dict[str, Any]:
        """The space the record was drawn from: Tune domains and fixed values. A key that is no
        longer a Config field (`ema`, a decay per step, replaced by `ema_epochs`) is left out: such a
        record replays as if its space had not varied the key, whose effect then adds to the spread
        of the surrogate's neighbours; its trials tables hold the new field at its default."""
        return params_from_json({k: v for k, v in self.meta[0]["params"].items() if k in CONFIG_COLUMNS})

    def param_space(self) -> dict[str, Any]:
        """A replayed search's flat trial config: what the record's trials were trained with (each
        key's most common value: repeats differ in seed), its schedule length, its space."""
        params = self.params()
        trained = {name: np.asarray(self.trials[name].mode().iloc[0]).item()
                   for name in CONFIG_COLUMNS if name not in params}
        return {**trained, "epochs": self.max_epochs, **params}


def budget_of(record: Record) -> dict:
    """The keys a replayed search takes from its record: the schedule length, the data and the
    network width its curves were trained on, and the per-trial resources whose seconds it simulates."""
    meta = record.meta[0]
    return {"max_epochs": record.max_epochs, "subset": meta["subset"], "val_size": meta["val_size"],
            "width": record.width, "cpus_per_trial": meta["cpus_per_trial"], "gpus_per_trial": meta["gpus_per_trial"]}


def check_search(record: Record, space: str, **given) -> None:
    """A replayed search searches the record's space, with its schedule length, data and width
    (`given`: max_epochs, subset, val_size, width as the search has them); ValueError otherwise."""
    if space != record.space:
        raise ValueError(f"space={space} but the record holds space={record.space}: replay that space")
    recorded = budget_of(record)
    for key, value in given.items():
        if value != recorded[key]:
            raise ValueError(
                f"{key}={value} but the record's curves have {key}={recorded[key]} (curves of another "
                f"schedule length, data or width do not answer for these): leave {key} out, or give the record's value"
            )


def load(paths: list[str] | tuple[str, ...] | str) -> Record:
    """One or several records (a list, or "PATH,PATH"), concatenated; ValueError when they do not fit together."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p]
    if not paths:
        raise ValueError("give at least one record folder (written by python -m search.replay.record)")
    metas, trials, epochs = [], [], []
    for i, path in enumerate(map(os.fspath, paths)):
        meta = read_meta(path)
        report = join(path, REPORT_FOLDER)
        t = read_report_table(join(report, "trials.parquet"), TRIALS)
        e = read_report_table(join(report, "epochs.parquet"), EPOCHS)
        t = t[t["status"] == "completed"]
        e = e[e["trial_id"].isin(t["trial_id"]) & (e["epoch"] <= meta["max_epochs"])]
        if len(paths) > 1:  # Tune's trial ids are unique within one experiment only
            t, e = t.assign(trial_id=f"r{i}-" + t["trial_id"]), e.assign(trial_id=f"r{i}-" + e["trial_id"])
        metas.append(meta)
        trials.append(t)
        epochs.append(e)
    for path, meta in zip(paths[1:], metas[1:]):
        differ = [k for k in COMPARABLE if meta[k] != metas[0][k]]
        if differ:
            pairs = ", ".join("the space's domains" if k == "params" else f"{k}={meta[k]!r} vs {metas[0][k]!r}"
                              for k in differ)
            raise ValueError(f"{path} does not fit with {paths[0]}: {pairs}")
    record = Record(
        paths=tuple(map(os.fspath, paths)),
        meta=tuple(metas),
        trials=pd.concat(trials, ignore_index=True),
        epochs=pd.concat(epochs, ignore_index=True).sort_values(["trial_id", "epoch"], ignore_index=True),
    )
    if record.trials.empty:
        raise ValueError(f"{', '.join(record.paths)}: no completed trial to replay")
    return record


def read_meta(path: str) -> dict:
    file = join(path, RECORD_FILE)
    if reachable_type(path, path) == pafs.FileType.NotFound:  # a mistyped path: "not a record" would send one looking inside it
        raise ValueError(f"{path} does not exist; give a record folder (make one with python -m search.replay.record)")
    if not is_file(file):
        raise ValueError(f"{path} is not a record: it has no {RECORD_FILE} (make one with python -m search.replay.record)")
    meta = read_json(file)
    lacking = [key for key in (*COMPARABLE, "cpus_per_trial", "gpus_per_trial") if key not in meta] \
        if isinstance(meta, dict) else ["everything: it is not a JSON object"]
    if lacking:
        raise ValueError(f"{file} lacks {', '.join(lacking)}: not a {RECORD_FILE} written by python -m search.replay.record")
    return meta


def read_report_table(path: str, schema: pa.Schema) -> pd.DataFrame:
    """A report table of a record made by an older checkout: Config fields added since are filled
    with Config's defaults (a new field's default keeps the old behaviour, which is what trained
    the record); any other column of `schema` must be there."""
    if not is_file(path):
        raise ValueError(f"{path} does not exist: not a whole record (python -m results.collect on its folder writes it)")
    fs, inner = locate(path)
    table = with_added_columns(pq.read_table(inner, filesystem=fs), schema)
    missing = [name for name in schema.names if name not in table.schema.names]
    if missing:
        raise ValueError(f"{path} lacks the columns {', '.join(missing)}: not a report table of a record")
    return table.select(schema.names).to_pandas()
