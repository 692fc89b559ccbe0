"""Every result table's columns and types, declared once, and the only way tables reach disk.

Paths are local paths or URIs (s3://, gs://, file://, ...): the latter go through pyarrow.fs.
Every write is atomic: a temporary file in the target's folder, then a rename over the target,
so a reader never sees half a file, even when the writer is killed mid-write.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Callable
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from model.config import Config, field_types
from model.data import CLASSES

# A trial's fate, from Tune's status and how many epochs it ran (see results.collect).
STATUSES = ("completed", "pruned", "error", "unfinished")

REPORT_FOLDER = "report"  # {experiment}/report/: written by results.collect from the Tune files
WINNER_FOLDER = "winner"  # {experiment}/winner/: written by the retrain of the best config


def _config_type(name: str, kind: Any) -> pa.DataType:
    if kind is bool:
        return pa.bool_()
    if kind is int:
        return pa.int64()
    if kind is float:
        return pa.float64()
    if kind is str or getattr(kind, "__origin__", None) is tuple:
        return pa.string()  # tuples travel as "64,128", as Config.to_flat() writes them
    raise ValueError(f"Config field {name} has type {kind}, which results.schema cannot store; use bool, int, float, str or a tuple")


def _floats(*names: str) -> list[tuple[str, pa.DataType]]:
    return [(name, pa.float64()) for name in names]


CONFIG_COLUMNS = tuple(field_types())

# One row per trial. seconds: training + validation time summed over its epochs;
# images_per_second: mean over its epochs; epochs_run: distinct epochs reported (the Config
# field `epochs`, further right, is the schedule length it was configured with).
TRIALS = pa.schema(
    [
        ("trial_id", pa.string()),
        ("status", pa.string()),
        ("epochs_run", pa.int64()),
        *_floats("best_val_acc", "last_val_acc", "best_val_loss", "last_val_loss"),
        ("params", pa.int64()),
        *_floats("seconds", "images_per_second"),
        ("node", pa.string()),
        *_floats("cpus_per_trial", "gpus_per_trial"),
        *[(name, _config_type(name, kind)) for name, kind in field_types().items()],
    ]
)

# One row per trial and epoch (1-based). lr: at the end of the epoch; seconds: the whole epoch;
# node: where the epoch ran (a trial retried after a lost node continues elsewhere).
EPOCHS = pa.schema(
    [
        ("trial_id", pa.string()),
        ("epoch", pa.int64()),
        *_floats("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_second"),
        ("node", pa.string()),
    ]
)

# The best config retrained on all training images, once per seed, scored on the test set.
RETRAIN = pa.schema(
    [
        ("seed", pa.int64()),
        *_floats("test_acc", "test_acc_no_mirror", "test_loss"),  # no_mirror: = test_acc unless mirror_tta
        ("epochs", pa.int64()),
        ("seconds", pa.float64()),
        ("params", pa.int64()),
    ]
)

RETRAIN_EPOCHS = pa.schema(
    [
        ("seed", pa.int64()),
        ("epoch", pa.int64()),
        *_floats("train_loss", "train_acc", "lr", "seconds", "images_per_second"),
    ]
)

PER_CLASS = pa.schema(
    [
        ("class", pa.string()),
        *_floats("precision", "recall", "f1"),
        ("support", pa.int64()),  # test images of the class
    ]
)

# Rows: the true class (column "true"); one count column per predicted class, in CLASSES order.
CONFUSION = pa.schema([("true", pa.string()), *[(name, pa.int64()) for name in CLASSES]])

# Milliseconds per forward pass of a batch of 1 and of 256 images on the trial's device
# (model.latency), measured only by a search whose objective names latency_ms: its trials table
# has them after params (TRIALS_WITH_LATENCY); every other trials table is TRIALS, and a reader
# asking for TRIALS_WITH_LATENCY (results.load) gets them empty (null).
LATER_COLUMNS = ("latency_ms", "latency_ms_256")
_AFTER_PARAMS = TRIALS.get_field_index("params") + 1
TRIALS_WITH_LATENCY = pa.schema([*list(TRIALS)[:_AFTER_PARAMS], *(pa.field(name, pa.float64()) for name in LATER_COLUMNS),
                                 *list(TRIALS)[_AFTER_PARAMS:]])

# File name (without .parquet) -> schema, per folder.
REPORT_TABLES = {"trials": TRIALS_WITH_LATENCY, "epochs": EPOCHS}  # as results.load reads them
WINNER_TABLES = {"retrain": RETRAIN, "retrain_epochs": RETRAIN_EPOCHS, "per_class": PER_CLASS, "confusion": CONFUSION}


def locate(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path (made absolute) or a URI."""
    text = os.fspath(path)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except pa.ArrowInvalid as error:  # an unknown scheme, a malformed URI
            raise ValueError(f"{text}: not a usable URI ({error})") from None
    return pafs.LocalFileSystem(), os.path.abspath(text)


def expand_home(location: str, key: str | None = None) -> str:
    """`location` (the value of `key`, or a folder given alone) with a leading ~ or ~USER made the
    home folder's path, as a shell does; a URI as given. Quoted in a command, a script or a config
    file, ~/x would otherwise name a folder called ~ in the working directory, while the printed
    commands, pasted into a shell, would name the home folder's x. ValueError (one line) for ~USER
    of no user here."""
    if "://" in location or not location.startswith("~"):
        return location
    expanded = os.path.expanduser(location)
    if expanded.startswith("~"):
        user = location.split("/", 1)[0]
        named = f"{key}={location}" if key else location
        raise ValueError(f"{named}: {user} is no user's home folder here; give an absolute or relative path")
    return expanded


def join(path: str | os.PathLike, *parts: str) -> str:
    """`path`/part/... for local paths and URIs alike."""
    return "/".join([os.fspath(path).rstrip("/"), *parts])


def file_type(path: str | os.PathLike) -> pafs.FileType:
    """File, Directory or NotFound (for object stores, Directory means "some key starts with path/")."""
    fs, inner = locate(path)
    return fs.get_file_info(inner).type


def reachable_type(path: str | os.PathLike, named: str) -> pafs.FileType:
    """file_type of a path a user gave (`named`: how to name it to them, as storage=PATH): ValueError,
    one line, when it cannot be reached, as a URI of an object store without network or credentials,
    or of a bucket that does not exist."""
    try:
        return file_type(path)
    except OSError as error:
        raise ValueError(f"{named}: cannot be reached ({' '.join(str(error).split())})") from None


def is_file(path: str | os.PathLike) -> bool:
    return file_type(path) == pafs.FileType.File


def write_table(frame: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema) -> None:
    """Write `frame` as Parquet with exactly `schema`'s columns, in its order and types."""
    problems = _column_problems(list(frame.columns), schema)
    if problems:
        raise ValueError(f"{os.fspath(path)}: the frame does not match the table's schema ({'; '.join(problems)})")
    arrays = []
    for field in schema:
        try:
            arrays.append(pa.array(frame[field.name], type=field.type, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"{os.fspath(path)}: column {field.name} does not convert to {field.type} ({error})") from None
    table = pa.Table.from_arrays(arrays, schema=schema)
    _write_atomically(path, lambda out: pq.write_table(table, out))


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pd.DataFrame:
    """The Parquet file at `path` as a DataFrame; ValueError when it is damaged or its columns or
    types differ from `schema`."""
    fs, inner = locate(path)
    try:
        table = pq.read_table(inner, filesystem=fs)
    except pa.ArrowInvalid:  # truncated, overwritten, not Parquet at all: pyarrow's text names footers and magic bytes
        raise ValueError(f"{os.fspath(path)} is damaged: not a readable Parquet file") from None
    table = with_added_columns(table, schema)
    problems = _column_problems(table.schema.names, schema) + [
        f"column {field.name} is {table.schema.field(field.name).type}, expected {field.type}"
        for field in schema
        if field.name in table.schema.names and table.schema.field(field.name).type != field.type
    ]
    if problems:
        raise ValueError(f"{os.fspath(path)} does not match its table's schema ({'; '.join(problems)})")
    return table.select(schema.names).to_pandas()


def with_added_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the columns of `schema` added since it was written: the latency columns empty
    (null), and Config fields at their default, which keeps the behaviour that trained the table's
    trials (a new field's default is the old behaviour)."""
    defaults = Config().to_flat()
    for field in schema:
        if field.name in table.schema.names:
            continue
        if field.name in LATER_COLUMNS:
            table = table.append_column(field, pa.nulls(len(table), type=field.type))
        elif field.name in defaults:
            table = table.append_column(field, pa.array([defaults[field.name]] * len(table), type=field.type))
    return table


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """A DataFrame with no rows and `schema`'s columns and dtypes (a table not written yet)."""
    return schema.empty_table().to_pandas()


def write_json(value: Any, path: str | os.PathLike) -> None:
    text = json.dumps(value, indent=2, allow_nan=False) + "\n"  # strict JSON: NaN is not JSON
    _write_atomically(path, lambda out: out.write(text.encode()))


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """A file such as a PNG, atomically, locally or at a URI."""
    _write_atomically(path, lambda out: out.write(data))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in `path`; ValueError naming the file when it is empty or not JSON."""
    fs, inner = locate(path)
    with fs.open_input_stream(inner) as stream:
        raw = stream.readall()
    if not raw.strip():
        raise ValueError(f"{os.fspath(path)} is empty; expected JSON")
    try:
        return json.loads(raw)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{os.fspath(path)} is not valid JSON ({error})") from None


def _column_problems(names: list[str], schema: pa.Schema) -> list[str]:
    """["missing columns a, b", "unexpected columns c"]; empty when the names are the schema's."""
    missing = [name for name in schema.names if name not in names]
    extra = [str(name) for name in names if name not in schema.names]
    named = (("missing", missing), ("unexpected", extra))
    return [f"{label} columns {', '.join(columns)}" for label, columns in named if columns]


def _write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    fs, target = locate(path)
    folder = posixpath.dirname(target)
    fs.create_dir(folder, recursive=True)
    # A dot-name in the target's folder: same filesystem, so the rename below is atomic (locally).
    temp = posixpath.join(folder, f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            with open(temp, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())  # the bytes reach the disk before the name points at them
            os.replace(temp, target)
        else:
            with fs.open_output_stream(temp) as out:
                write(out)
            fs.move(temp, target)  # object stores copy then delete: the target is never partial
    except BaseException:
        if fs.get_file_info(temp).type == pafs.FileType.File:
            fs.delete_file(temp)
        raise
