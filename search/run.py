"""`python -m search.run space=NAME [key=value ...]`: a Ray Tune search, collected into Parquet.

Optuna TPE (told the truth about early-stopped trials) proposes configs, ASHA stops the weak ones
by validation accuracy, one report and one checkpoint per epoch. `python -m search.run list`
prints the spaces. Every input is checked before anything is created on disk.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, fields

import pyarrow.fs

import spaces
from model import data as fmnist
from model import overrides
from model.config import preset
from results.schema import file_type, is_file, locate, read_json
from search import budgets
from search.ray_session import check_address

METRIC, MODE = "val_acc", "max"
RUN_FILE = "run.json"  # the search's settings, next to Tune's files: what a resume continues


@dataclass(frozen=True)
class Settings:
    space: str
    budget: str
    trials: int
    max_epochs: int
    grace: int
    eta: int
    concurrency: int
    cpus_per_trial: float
    gpus_per_trial: float
    seed: int  # Optuna's sampler
    subset: int | None
    val_size: int
    name: str
    storage: str  # a local path or a URI (s3://, gs://, ...) every node can reach
    # Session options: how to run, not what to search; free to change on resume.
    address: str = ""
    data_dir: str | None = None
    shared: bool = False  # the local storage path is a filesystem every node mounts (NFS)
    resume: bool = False
    verbose: bool = False

    @property
    def experiment(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    def recorded(self) -> dict:
        """What run.json keeps: the search itself, not how this session runs it."""
        skip = {"address", "data_dir", "shared", "resume", "verbose"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


SESSION_KEYS = ("name", "storage", "address", "data_dir", "shared", "resume", "verbose")
KEYS = ("space", "budget", *(f.name for f in fields(budgets.Budget)), "seed", *SESSION_KEYS)


def parse(argv: list[str]) -> Settings:
    """Settings from key=value arguments; ValueError (one line, the accepted values) otherwise."""
    args = overrides.parse(argv, KEYS)
    resume = overrides.parse_bool("resume", args.get("resume", "false"))
    if resume:
        return _resumed(args)
    space = args.get("space")
    if not space:
        raise ValueError(f"give space=NAME; spaces: {', '.join(spaces.SPACES)} (python -m search.run list)")
    spaces.get(space)
    budget_name = args.get("budget", "smoke")
    budget = asdict(budgets.get(budget_name))
    for key in budget:
        if key in args:
            budget[key] = _parse_budget_value(key, args[key])
    settings = Settings(
        space=space,
        budget=budget_name,
        seed=overrides.parse_int("seed", args.get("seed", "0"), 0),
        name=args.get("name") or f"{space}-{budget_name}",
        storage=args.get("storage", "runs"),
        **budget,
        **_session(args),
    )
    _check(settings)
    return settings


def _resumed(args: dict[str, str]) -> Settings:
    """The recorded search (run.json) with this session's options."""
    given = sorted(set(args) - set(SESSION_KEYS))
    if given:
        raise ValueError(
            f"resume=true continues the search as recorded in {RUN_FILE}; drop {', '.join(given)} "
            f"(only {', '.join(SESSION_KEYS)} may be given)"
        )
    if "name" not in args:
        raise ValueError("resume=true needs name=NAME of the search to continue")
    experiment = f"{args.get('storage', 'runs').rstrip('/')}/{args['name']}"
    if not is_file(f"{experiment}/{RUN_FILE}"):
        raise ValueError(f"nothing to resume: {experiment}/{RUN_FILE} does not exist")
    recorded = read_json(f"{experiment}/{RUN_FILE}")
    known = {f.name for f in fields(Settings)}  # run.json also says when the search started
    recorded = {k: v for k, v in recorded.items() if k in known}
    settings = Settings(**{**recorded, "storage": args.get("storage", "runs"), **_session(args)})
    _check(settings)
    return settings


def _session(args: dict[str, str]) -> dict:
    return {
        "address": check_address(args.get("address", "")),
        "data_dir": args.get("data_dir") or None,
        "shared": overrides.parse_bool("shared", args.get("shared", "false")),
        "resume": overrides.parse_bool("resume", args.get("resume", "false")),
        "verbose": overrides.parse_bool("verbose", args.get("verbose", "false")),
    }


def _parse_budget_value(key: str, text: str):
    if key == "subset":
        return None if text.lower() in ("", "none", "all") else overrides.parse_int(key, text, 1)
    if key in ("cpus_per_trial", "gpus_per_trial"):
        return overrides.parse_float(key, text, 0)
    return overrides.parse_int(key, text, 2 if key == "eta" else 1)


def _check(s: Settings) -> None:
    if s.grace > s.max_epochs:
        raise ValueError(f"grace={s.grace} exceeds max_epochs={s.max_epochs}: ASHA's first rung would never come")
    if s.cpus_per_trial <= 0:
        raise ValueError(f"cpus_per_trial={s.cpus_per_trial}: must be positive (a fraction such as 0.5 is fine)")
    if s.gpus_per_trial > 1 and s.gpus_per_trial != int(s.gpus_per_trial):
        raise ValueError(f"gpus_per_trial={s.gpus_per_trial}: above 1 it must be a whole number of GPUs")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", s.name):
        raise ValueError(f"name={s.name!r}: use letters, digits, '.', '_' and '-'")
    if s.address and "://" not in s.storage and not s.shared:
        raise ValueError(
            f"storage={s.storage} is a local path, but address={s.address} joins a cluster: multi-node Tune needs "
            "storage every node can reach; give storage=s3://BUCKET/runs (or gs://, ...), or shared=true for an NFS "
            "path mounted on every node"
        )
    try:
        locate(s.storage)
    except Exception as e:  # pyarrow raises its own types for unknown schemes
        raise ValueError(f"storage={s.storage}: not a usable path or URI ({e})") from None
    try:
        present = file_type(s.experiment) == pyarrow.fs.FileType.Directory
    except OSError as e:  # an object store without credentials, a missing bucket, ...
        raise ValueError(f"storage={s.storage}: cannot be reached ({e})") from None
    if s.resume and not present:
        raise ValueError(f"nothing to resume: {s.experiment} does not exist")
    if not s.resume and present:
        raise ValueError(f"{s.experiment} exists: add resume=true to continue it, or give another name=")
    preset(spaces.get(s.space).PRESET)


def param_space(s: Settings) -> dict:
    """The flat trial config: the space's preset, the schedule length, then the space's domains."""
    space = spaces.get(s.space)
    return {**preset(space.PRESET).to_flat(), "epochs": s.max_epochs, **space.PARAMS}


def main(argv: list[str]) -> int:
    if argv == ["list"]:
        from search.describe import print_spaces

        print_spaces()
        return 0
    try:
        settings = parse(argv)
        images, labels = fmnist.load("train", settings.data_dir)
        # seed=0, not the search's seed: every search validates on the same 6,000 images.
        split = fmnist.split(images, labels, settings.val_size, settings.subset, seed=0)
    except ValueError as e:
        return overrides.reject(e)
    from search.engine import run_search

    return run_search(settings, split)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
