"""`python -m search.replay.record space=NAME configs=N [key=value ...]`: learning curves to replay searches on.

Draws N configurations of the space at random (seeded), trains every one to max_epochs with no
early stopping, a few at a time as Ray Tune trials (the search's own trainable), and writes the
usual report tables plus record.json: which space and width, data, budget, machines and device
produced the curves (see search.replay.records). `repeats=R` trains the first R configurations a second
time with another weight seed: the seed-to-seed spread that the replay adds to its predictions.

    python -m search.replay.record space=full configs=120 repeats=8 \\
        width=0.125 max_epochs=8 subset=3000 val_size=2000
    python -m search.replay.record space=full configs=150 repeats=10 \\
        max_epochs=15 subset=10000 budget=standard gpus_per_trial=0.25 \\
        concurrency=8 data_dir=... storage=...

Keys: those of search.run that say what to train and where (budget, max_epochs, concurrency,
cpus_per_trial, gpus_per_trial, subset, val_size, width, seed, name, storage, address, data_dir,
shared, verbose, checkpoint_every), plus configs and repeats; not those that steer a search
(trials, grace, eta, objective, max_params, gpu_hours, cpu_hours, replay, warm_start). seed draws the
configurations. A record is made in one go: an interrupted one keeps its finished trials (the
replay uses completed trials only) but cannot be resumed.
"""

from __future__ import annotations

from model import overrides

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the slow imports below ends in one line
    overrides.starting()

import json
import os
import platform
import socket
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib.metadata import version

import numpy as np
import ray
from ray.tune.search import Searcher
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from model import data as fmnist
from model.config import Config
from results.collect import collect
from results.load import MADE_BY, RECORDER, load
from results.schema import join, write_json
from results.status import COMPLETED, UNFINISHED
from search import arguments
from search.replay.records import RECORD_FILE, params_to_json, searched, space_params
from search.runtime.devices import local_resources
from search.settings import RUN_FILE, Settings, check_resources, draw_config, param_space

OWN_KEYS = ("configs", "repeats")
NOT_FOR_A_RECORD = {"trials": "give configs=N", "grace": "a record stops nothing early",
                    "eta": "a record stops nothing early", "resume": "a record is made in one go",
                    "objective": "a record keeps every metric of every epoch",
                    "replay": "a record trains networks; it replays none",
                    "warm_start": "a record draws its configurations at random",
                    "max_params": "a record draws from the whole space",
                    "gpu_hours": "a record trains every configuration to max_epochs",
                    "cpu_hours": "a record trains every configuration to max_epochs"}
KEYS = (*OWN_KEYS, *(k for k in arguments.KEYS if k not in NOT_FOR_A_RECORD))


@dataclass(frozen=True)
class RecordSettings:
    run: Settings  # trials = configs + repeats; grace = max_epochs (no rung before the end)
    configs: int
    repeats: int

    def params(self) -> dict:
        """The flat trial config: preset, schedule length, then the space's domains, narrowed to the width."""
        return param_space(self.run)


def parse(argv: list[str]) -> RecordSettings:
    """RecordSettings from key=value arguments; ValueError (one line, the accepted values) otherwise."""
    for arg in argv:
        key = arg.partition("=")[0]
        if key in NOT_FOR_A_RECORD:
            raise ValueError(f"{key} is not a key of a record ({NOT_FOR_A_RECORD[key]}); valid keys: {', '.join(KEYS)}")
    args = overrides.parse(argv, KEYS)
    if "configs" not in args:
        raise ValueError("configs= is missing: give how many configurations to draw and record, e.g. configs=100")
    configs = overrides.parse_int("configs", args.pop("configs"), 1)
    repeats = overrides.parse_int("repeats", args.pop("repeats", "0"), 0)
    if repeats > configs:
        raise ValueError(f"repeats={repeats} exceeds configs={configs}: only recorded configurations can be repeated")
    space = args.get("space", "")
    args.setdefault("name", f"record-{space}-{args.get('budget', 'smoke')}")
    try:
        # No device budget: a record trains every configuration to max_epochs (and a budget's
        # gpu_hours would otherwise be refused for a record on CPUs, gpus_per_trial=0).
        settings = arguments.parse([f"{k}={v}" for k, v in args.items()]
                                   + [f"trials={configs + repeats}", "grace=1", "gpu_hours=none", "cpu_hours=none"])
    except arguments.ExistingExperiment as e:
        raise ValueError(f"{e.location} exists, and a record is made in one go (it cannot be resumed): give another "
                         "name=") from None
    settings = replace(settings, grace=settings.max_epochs)
    domains = searched(space_params(space, settings.width))
    if repeats and "seed" in domains:
        raise ValueError(f"space={space} searches seed, so a repeat would be another configuration; use repeats=0")
    return RecordSettings(run=settings, configs=configs, repeats=repeats)


def draw(rs: RecordSettings) -> list[dict]:
    """configs flat configurations drawn from the space with generator seed `seed`, each repeat
    right after its original (so an interrupted record still has its pairs)."""
    rng = np.random.default_rng(rs.run.seed)
    params = rs.params()
    points = []
    for _ in range(rs.configs):
        points.append(Config.from_flat(draw_config(params, rng)).to_flat())  # plain Python values, as Parquet and JSON keep them
    paired = [p for point in points[: rs.repeats] for p in (point, {**point, "seed": point["seed"] + 1})]
    return paired + points[rs.repeats :]


class RecordedConfigs(Searcher):
    """Hands out a fixed list of flat configurations, in order, then FINISHED."""

    def __init__(self, points: list[dict]) -> None:
        super().__init__()
        self.points = points
        self.given = 0

    def suggest(self, trial_id: str) -> dict | str:
        if self.given == len(self.points):
            return Searcher.FINISHED
        self.given += 1
        return self.points[self.given - 1]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing to learn: the list is fixed

    # Tune saves every searcher with the experiment state.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump({"points": self.points, "given": self.given}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.__dict__.update(json.load(f))


def record(rs: RecordSettings, split: fmnist.Split, data_source: str) -> int:
    from search.engine import build_tuner, fit, quiet, trainable  # engine imports the trainer: torch
    from search.progress import Progress
    from search.runtime.ray_session import ray_session

    s = rs.run
    points = draw(rs)
    if not s.verbose:
        quiet()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with ray_session(s.address, verbose=s.verbose) as resources:
        try:
            check_resources(s, resources)  # Ray's count, after the command's own (devices.local_resources)
        except ValueError as e:
            return overrides.reject(e)
        tuner = build_tuner(
            s, trainable(s, split), trials=len(points),
            search_alg=RecordedConfigs(points),  # no scheduler: FIFO, every trial to max_epochs
            callbacks=[Progress(len(points), s.max_epochs, shown=sorted(searched(rs.params())))],
            # Ended by Tune at max_epochs rather than by the trainable returning: Tune then reuses
            # the trial's actor for the next configuration (it did not for returned ones).
            stop={"training_iteration": s.max_epochs},
        )
        # results.collect reads it; search.run refuses to resume it
        write_json({**s.recorded(), "started": started, MADE_BY: RECORDER}, join(s.experiment, RUN_FILE))
        clock = time.monotonic()
        fit(tuner)
        wall = time.monotonic() - clock
        collect(s.experiment)
        exp = load(s.experiment)
        machines = describe_nodes(sorted(set(exp.epochs["node"])), s.gpus_per_trial)
    meta = metadata(rs, data_source, machines, started, wall, exp.status_counts())
    write_json(meta, join(s.experiment, RECORD_FILE))
    counts = ", ".join(f"{n} {status}" for status, n in meta["trials"].items())
    print(f"recorded {counts} in {wall / 60:.1f} min on {meta['device']}; the record is {s.location}")
    ended = sum(n for status, n in meta["trials"].items() if status != UNFINISHED)
    if ended < len(points):  # Ctrl-C or SIGTERM: Tune stopped the trials and returned
        print(f"interrupted: the record keeps its {meta['trials'].get(COMPLETED, 0)} completed trials of {len(points)} "
              "(what a replay uses); a record cannot be resumed")
        return overrides.interrupted_code()
    return 0 if meta["trials"].get(COMPLETED, 0) == len(points) else 1


def metadata(
    rs: RecordSettings, data_source: str, machines: list[dict], started: str, wall: float, counts: dict
) -> dict:
    s = rs.run
    devices = sorted({m["device"] for m in machines})
    return {
        "space": s.space,
        "width": s.width,
        "params": params_to_json(space_params(s.space, s.width)),  # the space drawn from, as spaces/ has it now
        "configs": rs.configs,
        "repeats": rs.repeats,
        "seed": s.seed,  # of the configurations' draw
        "max_epochs": s.max_epochs,
        "subset": s.subset,  # training images; null = all 54,000 left after validation
        "val_size": s.val_size,
        "validation_seed": fmnist.SPLIT_SEED,  # every search and record validates on the same images
        "data_source": data_source,
        "budget": s.budget,
        "concurrency": s.concurrency,
        "cpus_per_trial": s.cpus_per_trial,
        "gpus_per_trial": s.gpus_per_trial,
        "device": devices[0] if len(devices) == 1 else "mixed: " + ", ".join(devices) if devices else "none: no epoch ran",
        "machines": machines,
        "versions": {name: version(name) for name in ("torch", "ray", "optuna")},
        "started": started,
        "wall_seconds": round(wall, 1),
        "trials": counts,
    }


def describe_nodes(nodes: list[str], gpus_per_trial: float) -> list[dict]:
    """Host, CPU and the device a trial trains on, for each node that ran epochs ("host:nodeid8")."""
    alive = {n["NodeID"][:8]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
    machines = []
    for node in nodes:
        full_id = alive.get(node.rpartition(":")[2])
        if full_id is None:  # a spot node reclaimed since: its epochs say which host it was
            machines.append({"node": node, "hostname": node.rpartition(":")[0], "cpu": "unknown", "device": "unknown"})
            continue
        # The same GPU share as a trial: on a GPU node it then sees the device a trial sees.
        probe = _machine.options(num_gpus=gpus_per_trial,
                                 scheduling_strategy=NodeAffinitySchedulingStrategy(full_id, soft=False))
        machines.append({"node": node, **ray.get(probe.remote())})
    return machines


@ray.remote(num_cpus=0)
def _machine() -> dict:
    from search.runtime.devices import assigned_device  # the device choice of search.trainable

    device = assigned_device()
    if device != "cpu":
        import torch

        device = torch.cuda.get_device_name(device)
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "device": device,
    }


def main(argv: list[str]) -> int:
    if overrides.wants_help(argv):
        print(overrides.usage(__doc__))
        return 0
    try:
        rs = parse(argv)
        check_resources(rs.run, local_resources())
        source = fmnist.find(rs.run.data_dir)
        split = fmnist.load_split(rs.run.data_dir, rs.run.val_size, rs.run.subset)
    except ValueError as e:
        return overrides.reject(e)
    return record(rs, split, str(source))


if __name__ == "__main__":
    overrides.command(main)
