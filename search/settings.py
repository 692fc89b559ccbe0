"""What a search is: its settings (recorded in run.json, continued by a resume) and the trial
config they give. Shared by the command lines (search.run, search.replay.record), their key
parsing (search.arguments) and the engine, which imports no command line."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass

import spaces
from model.config import preset
from results.pareto import DEFAULT_OBJECTIVE, names
from results.schema import is_file, join
from search.runtime.storage import experiment_path

METRIC, MODE = "val_acc", "max"
# Seconds of a trial's work between its checkpoints: what a crash may cost each running trial.
CHECKPOINT_EVERY_S = 60.0
RUN_FILE = "run.json"  # the search's settings, next to Tune's files: what a resume continues
NOTHING_WRITTEN = "interrupted before the search started: nothing was written"
DEFAULT_STORAGE = "runs"
MAX_FAILURES = 2  # retries per trial, each from its last checkpoint (a lost node, a flaky GPU)
WIDTH_KEYS = ("filters", "dense")  # the Config fields that are channel counts (width=)


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
    storage: str  # as given: a local path (relative to the working directory) or a URI every node can reach
    max_params: int | None = None  # networks with more parameters are never trained
    gpu_hours: float | None = None  # device budget: trials' epoch seconds x GPUs (None: no limit)
    cpu_hours: float | None = None  # the same for a CPU search
    objective: str = DEFAULT_OBJECTIVE  # what the search optimises: results.pareto.OBJECTIVES (several: a Pareto front)
    replay: str = ""  # record folders (search.replay.records), comma-separated: answer trials from them; "": train
    warm_start: str = ""  # earlier searches of the space, comma-separated: TPE starts from their trials (search.strategy.warm)
    width: float = 1.0  # every channel count (filters, dense) times this: narrow networks for a quick rehearsal or a CPU record
    # Session options: how to run, not what to search; free to change on resume.
    address: str = ""
    data_dir: str | None = None
    shared: bool = False  # the local storage path is a filesystem every node mounts (NFS)
    resume: bool = False
    verbose: bool = False
    checkpoint_every: float = CHECKPOINT_EVERY_S  # seconds of a trial's work between checkpoints (0: every epoch)

    @property
    def device_hours(self) -> tuple[float | None, float]:
        """(the device budget in hours or None, the devices a trial holds: GPUs, or CPUs when it holds none)."""
        if self.gpus_per_trial:
            return self.gpu_hours, self.gpus_per_trial
        return self.cpu_hours, self.cpus_per_trial

    @property
    def objectives(self) -> tuple[str, ...]:
        """("val_acc",), or the objectives of a multi-objective search ("val_acc", "params")."""
        return names(self.objective)

    @property
    def experiment(self) -> str:
        """The experiment folder as Tune needs it: an absolute path or a URI."""
        return experiment_path(self.storage, self.name)

    @property
    def location(self) -> str:
        """The experiment folder as the user gave it, for messages."""
        return join(self.storage, self.name)

    def recorded(self) -> dict:
        """What run.json keeps: the search itself, not how this session runs it."""
        skip = {"address", "data_dir", "shared", "resume", "verbose", "checkpoint_every"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def resume_command(self) -> str:
        """The command that continues this search from where it stands."""
        given = {"name": self.name, "storage": None if self.storage == DEFAULT_STORAGE else self.storage,
                 "address": self.address or None, "shared": "true" if self.shared else None, "data_dir": self.data_dir}
        keys = [shlex.quote(f"{k}={v}") for k, v in given.items() if v is not None]
        return " ".join(["python -m search.run", *keys, "resume=true"])

    def interrupted_line(self) -> str:
        """What a Ctrl-C or SIGTERM leaves: the command that resumes the search once its run.json is
        written, else nothing at all."""
        if not is_file(join(self.experiment, RUN_FILE)):
            return NOTHING_WRITTEN
        return f"interrupted: resume with  {self.resume_command()}"


def check_resources(s: Settings, resources: dict) -> None:
    """ValueError, in one line, when this machine cannot run the search's trials. `resources` as
    ray.cluster_resources() names them: Ray's own once it runs, or devices.local_resources() before
    it starts. On an embedded Ray the machine's resources are final; a cluster may still scale up.
    A replay asks for replay.REPLAY_CPUS a trial, whatever cpus_per_trial and gpus_per_trial simulate."""
    if s.address or s.replay:
        return
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    if s.gpus_per_trial > gpus:
        on_cpus = "gpus_per_trial=0" + (" gpu_hours=none (cpu_hours=N for a CPU budget)" if s.gpu_hours is not None else "")
        raise ValueError(f"gpus_per_trial={s.gpus_per_trial} but this machine has {gpus:g} GPUs; use {on_cpus} or address=")
    if s.cpus_per_trial > cpus:
        raise ValueError(f"cpus_per_trial={s.cpus_per_trial} but this machine has {cpus:g} CPUs")


def param_space(s: Settings) -> dict:
    """The flat trial config: the space's preset, the schedule length, then the space's domains;
    channel counts times the width."""
    space = spaces.get(s.space)
    return narrowed({**preset(space.PRESET).to_flat(), "epochs": s.max_epochs, **space.PARAMS}, s.width)


def narrowed(params: dict, width: float) -> dict:
    """`params` (flat: fixed values or Tune domains) with every channel count times `width`: at
    0.125, filters 64,128 becomes 8,16 and dense 256 becomes 32, about 1/64 of the convolutions' cost."""
    from ray.tune import choice  # here: search.run's first line should not wait for Ray Tune
    from ray.tune.search.sample import Categorical

    params = dict(params)
    for key in WIDTH_KEYS:
        value = params.get(key)
        if isinstance(value, Categorical):
            # dict.fromkeys: narrowing can map two choices onto one; keep each once, in order.
            params[key] = choice(list(dict.fromkeys(scaled(c, width) for c in value.categories)))
        elif value is not None:
            params[key] = scaled(value, width)
    return params


def scaled(value, width: float):
    """One `filters` ("64,128") or `dense` (256) value times `width`; at least 1 channel, 0 stays 0."""
    if isinstance(value, str):
        return ",".join(str(max(1, round(int(c) * width))) for c in value.split(","))
    return 0 if value == 0 else max(1, round(value * width))


def draw_config(space: dict, rng) -> dict:
    """One flat configuration of a Tune param space: each domain sampled with `rng` (a NumPy
    Generator), the fixed values as they are."""
    from ray.tune.search.sample import Domain  # here: search.run's first line should not wait for Ray Tune

    return {k: v.sample(random_state=rng) if isinstance(v, Domain) else v for k, v in space.items()}
