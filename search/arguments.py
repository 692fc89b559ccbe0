"""A search's keys, parsed and checked into `Settings` before Ray starts or anything is written:
values and their ranges, the storage, the experiment folder and its lock, and what a resume must
repeat. Used by the command lines that start searches (search.run, search.replay.record)."""

from __future__ import annotations

import math
import re
import typing
from dataclasses import MISSING, fields, replace

import pyarrow.fs as pafs

import spaces
from model import data as fmnist
from model import overrides
from model.config import MAX_EPOCHS, MAX_SEED, preset
from results import pareto
from results.load import run_kind
from results.schema import expand_home, file_type, is_file, join, locate, read_json
from search.replay import records
from search.runtime.devices import local_gpus
from search.runtime.lock import LOCK_FILE, LockHeld, held_message, holder
from search.runtime.ray_session import check_address
from search.runtime.storage import NAME_MAX, check_writable, is_uri, resolve
from search.settings import CHECKPOINT_EVERY_S, DEFAULT_STORAGE, RUN_FILE, Settings, param_space
from search.strategy import budgets, warm

MAX_COUNT = 1_000_000  # trials, concurrency, eta: a sane cap, far beyond any real search
MAX_WIDTH = 16  # the seed network at 16x has 1024 and 2048 channels: far beyond a small CNN
# (minimum, maximum) of each numeric search key; None: no bound.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "trials": (1, MAX_COUNT), "max_epochs": (1, MAX_EPOCHS), "grace": (1, MAX_EPOCHS), "eta": (2, MAX_COUNT),
    "concurrency": (1, MAX_COUNT), "cpus_per_trial": (0, None), "gpus_per_trial": (0, None),
    "subset": (1, fmnist.SPLITS["train"]), "val_size": (1, fmnist.SPLITS["train"] - 1), "seed": (0, MAX_SEED),
    "max_params": (1, None), "gpu_hours": (None, None), "cpu_hours": (None, None), "width": (0, MAX_WIDTH),
}
OPTIONAL = ("subset", "max_params", "gpu_hours", "cpu_hours")  # keys that take "none" (subset: "all")

SESSION_KEYS = ("name", "storage", "address", "data_dir", "shared", "resume", "verbose", "checkpoint_every")
SEARCH_KEYS = ("space", "budget", *(f.name for f in fields(budgets.Budget)), "width", "seed", "objective", "replay",
               "warm_start")
KEYS = (*SEARCH_KEYS, *SESSION_KEYS)
KEY_HELP = {
    "space": "the space to search: " + ", ".join(spaces.SPACES) + " (python -m search.run list)",
    "budget": "smoke (8 trials, 3 epochs, 3,000 images, CPU) or standard (8 minutes of each GPU: 0.09 GPU-hours, "
              "up to 160 trials of up to 30 epochs, all data, 0.25 GPU a trial)",
    "trials": "trials to run (overrides the budget's)",
    "max_epochs": "ASHA's max epochs, also each trial's schedule length",
    "grace": "epochs before ASHA may stop a trial (its first rung)",
    "eta": "ASHA's reduction factor: the top 1/eta of the trials go on at each rung",
    "concurrency": "trials at once",
    "cpus_per_trial": "CPUs per trial (fractions allowed)",
    "gpus_per_trial": "GPUs per trial (fractions up to 1, e.g. 0.25: four trials share a GPU)",
    "subset": "training images (a stratified subset; all: every one left after validation)",
    "val_size": "validation images held out of the 60,000",
    "width": "every channel count (filters, dense) times this, e.g. 0.25: narrow networks for a quick rehearsal "
             "(default 1)",
    "max_params": "never train a network with more parameters (refused when suggested; default none)",
    "gpu_hours": "stop when the trials have used this many GPU-hours (epoch seconds x gpus_per_trial; default none)",
    "cpu_hours": "the same for a CPU search (epoch seconds x cpus_per_trial)",
    "seed": f"Optuna's sampler seed, 0..{MAX_SEED} (default 0)",
    "objective": "val_acc (default), val_acc,params or val_acc,latency_ms (ms a batch of 1 on the trial's device): "
                 "several find a Pareto front, with MO-ASHA (docs/search.md)",
    "replay": "record folders (python -m search.replay.record), comma-separated: replay their curves instead of training",
    "warm_start": "earlier searches of the same space and width, comma-separated (runs/OLD,s3://...): TPE starts from their "
                  "finished trials",
    "name": "the experiment's folder name (default SPACE-BUDGET)",
    "storage": f"where experiments live: a folder (default {DEFAULT_STORAGE}) or a URI (s3://...)",
    "address": "empty: a local Ray; auto or host:port: join a running cluster",
    "data_dir": "folder with the Fashion-MNIST files (default: FASHION_MNIST_DIR, then Debian's package)",
    "shared": "true: the local storage folder is mounted on every node (NFS)",
    "resume": "true: continue the search name= (or the one the given command started)",
    "verbose": "true: show Ray Tune's own console output",
    "checkpoint_every": f"seconds of a trial's work between its checkpoints, what a crash may cost it "
                        f"(default {CHECKPOINT_EVERY_S:g}; 0: after every epoch)",
}


def parse(argv: list[str]) -> Settings:
    """Settings from key=value arguments, checked (values, storage, the experiment folder and its
    lock) without writing anything; ValueError (one line, the accepted values) otherwise."""
    args = overrides.parse(argv, KEYS)
    session = _session(args)
    storage = DEFAULT_STORAGE
    if "storage" in args:
        storage = expand_home(overrides.parse_text("storage", args["storage"]), "storage")
    given = {key: args[key] for key in SEARCH_KEYS if key in args}
    check_writable(storage, "storage")
    if session["resume"]:
        settings = _recorded(storage, _resumed_name(args, given), session)
        _compare(settings, given)
    else:
        settings = _fresh(args, storage, session)
        check_values(settings)
        if settings.warm_start:  # read at the start only: a resume finds the warm trials in its study
            warm.check(settings.warm_start, settings.space, settings.width, replay=bool(settings.replay))
    _check_folder(settings)
    return settings


def _session(args: dict[str, str]) -> dict:
    return {
        "address": check_address(args.get("address", "")),
        "data_dir": overrides.parse_text("data_dir", args["data_dir"]) if "data_dir" in args else None,
        "shared": overrides.parse_bool("shared", args.get("shared", "false")),
        "resume": overrides.parse_bool("resume", args.get("resume", "false")),
        "verbose": overrides.parse_bool("verbose", args.get("verbose", "false")),
        "checkpoint_every": overrides.parse_float("checkpoint_every", args["checkpoint_every"], 0)
        if "checkpoint_every" in args else CHECKPOINT_EVERY_S,
    }


def _fresh(args: dict[str, str], storage: str, session: dict) -> Settings:
    """A new search: the budget's values, overridden by the keys given."""
    if "space" not in args:
        raise ValueError(f"give space=NAME; spaces: {', '.join(spaces.SPACES)} (python -m search.run list)")
    values = {key: parse_search_value(key, text) for key, text in args.items() if key in SEARCH_KEYS}
    budget_name = values.get("budget", "smoke")
    # A local search's budget grows with this machine's GPUs; a cluster's GPUs are unknown before
    # it is joined (and may scale): there, trials= and concurrency= say how much to run.
    budget = {**budgets.get(budget_name).values(0 if session["address"] else local_gpus()), "width": 1.0}
    if "replay" in values:  # the record's schedule length, data, width and per-trial resources
        budget.update(records.budget_of(records.load(values["replay"])))
    budget.update({key: value for key, value in values.items() if key in budget})
    if budget["gpu_hours"] is not None and "gpu_hours" not in values and not budget["gpus_per_trial"]:
        raise ValueError(f"budget={budget_name} gives gpu_hours={budget['gpu_hours']:g}, but trials use no GPU "
                         "(gpus_per_trial=0): add gpu_hours=none, and cpu_hours=N for a CPU budget")
    name = _name(args["name"]) if "name" in args else f"{values['space']}-{budget_name}"
    return Settings(space=values["space"], budget=budget_name, seed=values.get("seed", 0), name=name, storage=storage,
                    objective=values.get("objective", pareto.DEFAULT_OBJECTIVE),
                    replay=values.get("replay", ""), warm_start=values.get("warm_start", ""), **budget, **session)


def parse_search_value(key: str, text: str):
    """One search key's value, parsed as a new search parses it."""
    if key in ("space", "budget"):
        (spaces.get if key == "space" else budgets.get)(text)
        return text
    if key == "objective":
        pareto.names(text)
        return text
    if key == "replay":  # kept resolved: a resume from another folder, or spelled ./REC/, finds the same records
        paths = [resolve(expand_home(part.strip(), "replay")) for part in text.split(",") if part.strip()]
        if len(set(paths)) < len(paths):  # its curves counted twice: each configuration's seeds doubled
            raise ValueError(f"replay={text}: a record named twice")
        try:
            records.load(paths)
        except ValueError as e:  # what is wrong with the record, said of the key that named it
            raise ValueError(f"replay={text}: {e}") from None
        return ",".join(paths)
    if key == "warm_start":  # resolved too: on resume, runs/OLD/ and ./runs/OLD are the folder recorded
        return ",".join(map(resolve, warm.sources(text)))
    if key in OPTIONAL and text.lower() in ("all", "none"):
        return None
    if key in ("cpus_per_trial", "gpus_per_trial", "gpu_hours", "cpu_hours", "width"):
        return overrides.parse_float(key, text, *RANGES[key])
    return overrides.parse_int(key, text, *RANGES[key])


def _name(text: str) -> str:
    """An experiment name: one folder inside the storage, never `.`, `..` or a path."""
    name = overrides.parse_text("name", text)
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
        raise ValueError(f"name={name!r}: use letters, digits, '.', '_' and '-', not starting with '.' (one folder in storage)")
    if len(name) > NAME_MAX:
        raise ValueError(f"name= has {len(name)} characters; a folder name has at most {NAME_MAX}")
    return name


def _resumed_name(args: dict[str, str], given: dict[str, str]) -> str:
    if "name" in args:
        return _name(args["name"])
    if "space" in given:  # the command that started the search, plus resume=true: the same default name
        return _name(f"{given['space']}-{given.get('budget', 'smoke')}")
    raise ValueError("resume=true needs name=NAME of the search to continue (or the command that started it)")


def _recorded(storage: str, name: str, session: dict) -> Settings:
    """The search recorded in storage/name/run.json, with this session's options."""
    location = join(storage, name)  # as the user gave it: relative paths name the same files
    file = join(location, RUN_FILE)
    if not is_file(file):
        raise ValueError(f"nothing to resume: {file} does not exist; give the name= (and storage=) of a search "
                         f"started before, or start it without resume=true")
    record = read_json(file)
    if not isinstance(record, dict):
        raise ValueError(f"{file}: expected the JSON object search.run writes, found {type(record).__name__}")
    if run_kind(record) == "record" or is_file(join(location, records.RECORD_FILE)):
        raise ValueError(f"{location} is a record (python -m search.replay.record), not a search: a record cannot be "
                         f"resumed; replay it with replay={location}")
    hints = typing.get_type_hints(Settings)
    values = {}
    for field in (f for f in fields(Settings) if f.name not in SESSION_KEYS):
        key = field.name
        if key not in record and field.default is not MISSING:  # a key added since this run.json was written
            continue
        if key not in record:
            raise ValueError(f"{file} lacks {key}: not a run.json written by search.run")
        values[key] = _typed(file, key, record[key], hints[key])
    settings = Settings(**values, name=name, storage=storage, **session)
    try:
        check_values(settings)
    except ValueError as e:
        raise ValueError(f"{file}: {e}") from None
    return settings


def _typed(file: str, key: str, value, hint):
    # A number JSON holds but Python's float or int cannot (Infinity, NaN, 400 digits) is no recorded value.
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        abs(value) <= overrides.INT_LIMIT if isinstance(value, int) else math.isfinite(value))
    if (hint is float or hint == (float | None)) and numeric:
        return float(value)
    if hint == (float | None) and value is None:
        return None
    if (hint is int or hint == (int | None)) and numeric and value == int(value):
        return int(value)
    if (hint is str and isinstance(value, str)) or (hint == (int | None) and value is None):
        return value
    raise ValueError(f"{file}: {key}={value!r} is not what search.run records there ({getattr(hint, '__name__', hint)})")


def _compare(recorded: Settings, given: dict[str, str]) -> None:
    """resume=true with search keys: each must equal the recorded value."""
    for key, text in given.items():
        value = parse_search_value(key, text)
        if value != getattr(recorded, key):
            further = (f" (to search on with another {key}=, start a new search with warm_start={recorded.location})"
                       if key in ("trials", "gpu_hours", "cpu_hours") else "")
            raise ValueError(
                f"resume=true: {key}={text} differs from {key}={_shown(key, getattr(recorded, key))} recorded in "
                f"{join(recorded.location, RUN_FILE)}; give the recorded value or leave {key} out{further}"
            )


def _shown(key: str, value) -> str:
    """A recorded value as the key would be typed: subset=all, max_params=none, gpu_hours=0.5."""
    if value is None:
        return "all" if key == "subset" else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_values(s: Settings) -> None:
    """The settings themselves, without looking at any file; ValueError (one line) otherwise."""
    spaces.get(s.space)
    budgets.get(s.budget)
    _name(s.name)
    for key, bounds in RANGES.items():
        if getattr(s, key) is not None:
            overrides.check_range(key, getattr(s, key), *bounds)
    if s.grace > s.max_epochs:
        raise ValueError(f"grace={s.grace} exceeds max_epochs={s.max_epochs}: ASHA's first rung would never come")
    if s.cpus_per_trial <= 0:
        raise ValueError(f"cpus_per_trial={s.cpus_per_trial}: must be positive (a fraction such as 0.5 is fine)")
    if s.width <= 0:
        raise ValueError(f"width={s.width:g}: must be positive (1 keeps the space's channel counts; 0.25 a quarter)")
    if s.gpus_per_trial > 1 and s.gpus_per_trial != int(s.gpus_per_trial):
        raise ValueError(f"gpus_per_trial={s.gpus_per_trial}: above 1 it must be a whole number of GPUs")
    if s.gpu_hours is not None and not s.gpus_per_trial:
        raise ValueError(f"gpu_hours={_shown('gpu_hours', s.gpu_hours)} but trials use no GPU (gpus_per_trial=0): give cpu_hours= instead")
    if s.cpu_hours is not None and s.gpus_per_trial:
        raise ValueError(f"cpu_hours={_shown('cpu_hours', s.cpu_hours)} but trials use GPUs (gpus_per_trial={_shown('gpus_per_trial', s.gpus_per_trial)}): give gpu_hours= instead")
    for key in ("gpu_hours", "cpu_hours"):
        if getattr(s, key) is not None and getattr(s, key) <= 0:  # 0 and -1 alike: RANGES leaves both to this
            raise ValueError(f"{key}={_shown(key, getattr(s, key))}: a budget must be positive (none: no limit)")
    if s.address and not is_uri(s.storage) and not s.shared:
        raise ValueError(
            f"storage={s.storage} is a local path, but address={s.address} joins a cluster: multi-node Tune needs "
            "storage every node can reach; give storage=s3://BUCKET/runs (or gs://, ...), or shared=true for an NFS "
            "path mounted on every node"
        )
    space = spaces.get(s.space)
    start = preset(space.PRESET)
    replace(start, epochs=s.max_epochs)  # Config's own checks of the schedule length
    fmnist.check_sizes(s.val_size, s.subset, largest_batch(space.PARAMS.get("batch_size", start.batch_size)))
    record = records.load(s.replay) if s.replay else None
    objectives = pareto.names(s.objective)
    if record is not None:
        records.check_search(record, s.space, max_epochs=s.max_epochs, subset=s.subset, val_size=s.val_size,
                             width=s.width)
    if s.warm_start and len(objectives) > 1:
        raise ValueError(f"warm_start= with objective={s.objective}: a warm start carries val_acc alone; "
                         "give objective=val_acc, or leave warm_start out")
    if record is not None and "latency_ms" in objectives:
        raise ValueError(f"objective={s.objective} with replay=: a record holds no latencies; "
                         f"choose objective={' or '.join(o for o in pareto.OBJECTIVES if 'latency_ms' not in o)}")
    if s.max_params is not None:
        from search.strategy.searcher import check_max_params  # here: Optuna takes a while to import

        check_max_params(record.param_space() if record is not None else param_space(s), s.max_params, s.seed)


def largest_batch(value) -> int:
    """The largest batch size a space's batch_size (a fixed value or a Tune domain) can take."""
    from ray.tune.search.sample import Categorical, Domain

    if isinstance(value, Categorical):
        return max(int(v) for v in value.categories)
    if isinstance(value, Domain):
        return int(value.upper)
    return int(value)


class ExistingExperiment(ValueError):
    """A new search (or record) named after an experiment that exists: one line, exit code 2."""

    def __init__(self, location: str) -> None:
        super().__init__(f"{location} exists: add resume=true to continue it, or give another name=")
        self.location = location


def _check_folder(s: Settings) -> None:
    """The experiment folder fits the command (new: not a search yet; resume: one) and no live
    process holds it. Reads only."""
    if not s.resume:
        if is_file(join(s.experiment, RUN_FILE)):
            raise ExistingExperiment(s.location)
        kind = file_type(s.experiment)
        if kind == pafs.FileType.File:
            raise ValueError(f"{s.location} is a file; give another name=")
        if kind == pafs.FileType.Directory and set(_names_in(s.experiment)) - {LOCK_FILE}:
            raise ValueError(f"{s.location} exists and holds no {RUN_FILE}, so it is not a search; give another name=")
    info = holder(s.experiment)
    if info is not None:
        raise LockHeld(held_message(s.location, info))


def _names_in(folder: str) -> list[str]:
    fs, inner = locate(folder)
    return [info.base_name for info in fs.get_file_info(pafs.FileSelector(inner))]
