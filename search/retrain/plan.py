"""What a retrain will do, from its command line: checked before anything runs or is created."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

import search.retrain
from model import data as fmnist
from model import overrides
from model.config import MAX_EPOCHS, MAX_SEED, PRESETS, Config, field_types, preset
from results.schema import expand_home, file_type
from search.runtime.storage import check_writable

RETRAIN_KEYS = {
    "seeds": "how many seeds to train (default 3)",
    "epochs": "epochs per seed, also the schedule's length (default 30)",
    "trial": "retrain this trial of the search instead of the best one",
    "config": "retrain a preset instead: " + ", ".join(PRESETS),
    "data_dir": "folder with the Fashion-MNIST files (default: FASHION_MNIST_DIR, then Debian's package)",
    "address": "join this Ray cluster (auto or host:port); default: start a local Ray",
    "cpus_per_trial": "CPUs per seed (default: the cluster's CPUs shared between the seeds)",
    "gpus_per_trial": "GPUs per seed, fractions allowed (default: the GPUs shared between the seeds, at most 1 each; 0 without GPUs)",
    "subset": "train on a stratified subset of this many training images (quick runs and tests; default: all)",
    "device": "cpu or cuda (default: the GPU Ray assigns a seed when gpus_per_trial > 0, else the CPU)",
}
MAX_SEEDS = 100  # a sane cap: each seed is a whole training run


@dataclass(frozen=True)
class Plan:
    run: str  # the run folder as given (a leading ~ expanded): a local path or a URI
    cfg: Config  # with epochs applied; seed = the first seed
    source: str  # where the config came from, for the printout and model.pt
    seeds: tuple[int, ...]
    data_dir: str | None
    subset: int | None
    address: str
    cpus_per_trial: float | None
    gpus_per_trial: float | None
    device: str | None


def usage() -> str:
    return overrides.usage(search.retrain.__doc__, {**RETRAIN_KEYS, "seed": "the first seed (default 0)"},
                           "And every Config key.")


def parse_args(argv: list[str]) -> Plan:
    """Everything checked before anything runs or is created; ValueError (one line) otherwise."""
    from search.runtime.lock import LockHeld, held_message, holder
    from search.runtime.ray_session import check_address

    if not argv or "=" in argv[0] or argv[0].startswith("-"):
        raise ValueError("usage: python -m search.retrain runs/NAME [key=value ...]; the run folder comes first (--help)")
    run = expand_home(overrides.parse_text("the run folder", argv[0]))
    config_keys = list(field_types())
    args = overrides.parse(argv[1:], [*RETRAIN_KEYS, *(k for k in config_keys if k not in RETRAIN_KEYS)])
    if "trial" in args and "config" in args:
        raise ValueError("give trial=ID or config=PRESET, not both")
    check_writable(run)
    in_use = holder(run)  # first: while a search runs there, its report is missing or out of date; before Ray
    if in_use is not None:
        raise LockHeld(held_message(run, in_use))
    if "config" in args:
        name = args.pop("config")
        base, source = preset(name), f"preset {name}"
    else:
        base, source = _config_from_search(run, args.pop("trial", None))
    seeds = overrides.parse_int("seeds", args.pop("seeds", "3"), 1, MAX_SEEDS)
    epochs = overrides.parse_int("epochs", args.pop("epochs", "30"), 1, MAX_EPOCHS)
    data_dir = overrides.parse_text("data_dir", args.pop("data_dir")) if "data_dir" in args else None
    subset = fmnist.parse_subset(args.pop("subset")) if "subset" in args else None
    address = check_address(args.pop("address", ""))
    cpus = overrides.parse_float("cpus_per_trial", args.pop("cpus_per_trial"), 0) if "cpus_per_trial" in args else None
    gpus = overrides.parse_float("gpus_per_trial", args.pop("gpus_per_trial"), 0) if "gpus_per_trial" in args else None
    if cpus is not None and cpus <= 0:
        raise ValueError(f"cpus_per_trial={cpus}: must be above 0")
    if gpus is not None and gpus > 1 and gpus != int(gpus):
        raise ValueError(f"gpus_per_trial={gpus}: above 1 it must be a whole number of GPUs")
    device = args.pop("device", None)
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device={device!r}: choose cpu or cuda")
    if device == "cuda" and gpus == 0:
        raise ValueError("device=cuda with gpus_per_trial=0: a task without a GPU cannot use cuda")
    first_seed = _first_seed(args.pop("seed"), seeds) if "seed" in args else 0
    cfg = Config.from_flat({**args, "epochs": epochs, "seed": first_seed}, base=base)  # the rest: Config keys
    if args:  # winner.json and results.show name what was retrained: not the trial or preset as it was
        source += " with " + " ".join(f"{key}={value}" for key, value in args.items())
    fmnist.check_sizes(0, subset, cfg.batch_size)
    return Plan(
        run, cfg, source, tuple(range(first_seed, first_seed + seeds)), data_dir, subset, address, cpus, gpus, device
    )


def _first_seed(text: str, seeds: int) -> int:
    """`seed=`: the first of the `seeds` seeds, which run seed, seed + 1, ...; the last must fit 32 bits too."""
    try:
        return overrides.parse_int("seed", text, 0, MAX_SEED - seeds + 1)
    except ValueError as error:
        if seeds == 1:
            raise
        raise ValueError(f"{error} (the first of seeds={seeds}: seed to seed + {seeds - 1}, each at most "
                         f"{MAX_SEED:,})") from None


def _config_from_search(run: str, trial: str | None) -> tuple[Config, str]:
    """The best (or the named) trial's config from the search results in `run`."""
    if file_type(run) != pafs.FileType.Directory:
        raise ValueError(f"{run}: no such run folder; give config=seed or config=baseline to retrain a preset there")
    import results

    try:
        found = results.load(run)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{run}: no search results to retrain from ({e}); give config=seed|baseline instead") from None
    if not found.searched:  # a folder a preset's retrain made: its winner/ only
        raise ValueError(f"{run} holds a retrain only, no search to take a trial from; give config=seed|baseline")
    if trial is None:
        best = found.best
        if not best:
            ended = ", ".join(f"{n} {status}" for status, n in found.status_counts().items()) or "none yet"
            raise ValueError(f"{run}: no trial of the search ended with a result (trials: {ended}), so there is no best "
                             "trial; give trial=ID or config=seed|baseline")
        return Config.from_flat(best["config"]), f"best trial {best['trial_id']}"
    rows = found.trials[found.trials["trial_id"] == trial]
    if rows.empty:
        some = ", ".join(found.trials["trial_id"].head(5))
        raise ValueError(f"trial={trial!r}: not a trial of {run} (trials are e.g. {some})")
    row = rows.iloc[0]  # trial ids are unique in the trials table
    return Config.from_flat({key: row[key] for key in field_types()}), f"trial {trial}"


