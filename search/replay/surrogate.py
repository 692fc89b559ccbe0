"""Searches that train nothing: a Tune trainable that answers every configuration from a record.

The searcher, the scheduler and the callbacks are the real ones; only the training is replaced.
For a proposed configuration the trainable reports, epoch by epoch, the keys search.trainable
reports (epoch, train/val loss and accuracy, lr, seconds, images_per_second, params, node):

- **recorded**: when the record holds the configuration (equal on every searched key), one of its
  recorded curves, exactly (one of its seeds, drawn when it holds several);
- **predicted** otherwise, by k-nearest neighbours (`Surrogate`). Each searched key is scaled to
  [0, 1]: log-uniform ones on a log scale, uniform and integer ones linearly, categories of
  numbers by their rank; other categorical keys count 1 when they differ, 0 when equal. Distance
  is Euclidean, each key's squared difference weighted by its **relevance**: how strongly the key
  ranks the record's final val_acc, |Spearman's rho| for a key with an order and the correlation
  ratio of the ranks over its categories for one without (0 to 1; all keys 1 where none ranks
  anything). Most keys of a space change little (on the 12-epoch CPU record four of 22 rank the
  final accuracy above 0.3: dense 0.55, lr 0.51, filters 0.45, strength 0.40), and with equal
  weights the many that do not decide who the neighbours are. Leaving one configuration out, with
  the weights taken from the rest, the final val_acc's Spearman rises from 0.46 to 0.67 and its
  mean absolute error falls from 0.166 to 0.133 on that record (8-epoch record: 0.34 to 0.46, 0.210
  to 0.193; `benchmarks/search_efficiency.py --loo 5`).
  A neighbour's weight is 1 / distance. The prediction has two parts:
  * its **level**, each key's value at the last epoch: the weighted mean over the K nearest
    recorded configurations of the whole record (each averaged over its seeds);
  * its **shape**, each epoch's value relative to the last: the same weighted mean over the K
    nearest configurations that share its learning-rate schedule, optimizer and batch size
    (`SHAPE_KEYS`, the categorical keys that bend a curve: a one-cycle curve rises late, a
    larger batch takes fewer steps an epoch), never blended across them. Where the record holds
    no configuration with all three, the last of them is given up first (batch size, then the
    optimizer); the schedule is given up only when the record has none of that schedule.
  The prediction is the shape scaled to the level (shape x level / shape's last value), so a
  one-cycle prediction rises like the record's one-cycle curves whatever the neighbours of other
  schedules do. Matching the shape keys for the level as well predicts worse: on the 12-epoch CPU
  record (with every key weighted alike, before the relevance), leaving one configuration out, the
  final val_acc's mean absolute error rises from 0.164 to 0.210 (Spearman 0.47 to 0.06; the
  neighbours of one schedule are too few and too far), while taking only the shape from them lifts
  the rank correlation at epochs 1 and 3 from 0.19 and 0.43 to 0.39 and 0.54 at the same final
  error. lr is the shape keys' neighbours' schedules (lr / their peak lr) times this
  configuration's peak lr.
  Then seed-to-seed noise on the losses and accuracies, as recorded: the difference of the two
  seeds of one of the record's repeated configurations, drawn at random, with a random sign,
  divided by sqrt(2) (it then has one seed's variance and the recorded correlation between epochs
  and keys). Every predicted loss and accuracy is then held within the range the record shows for
  that key at that epoch (its lowest and highest recorded run): noise never carries a prediction
  past the best (or the worst) curve recorded. Time (seconds, images_per_second) and lr get no
  noise: how long an epoch takes is not what a weight seed changes (on a shared machine the
  recorded differences are other people's load). A record without repeats gives predictions
  without noise. params is unknown (null) for a prediction.

The random draws come from a generator seeded by the search's seed and the configuration, so a
configuration gets the same answer every time in a search of that seed.

`seconds` is simulated: the recorded (or predicted) seconds of the epoch on the recording device;
summed by results.collect it is the trials' simulated device-seconds. Each epoch sleeps
`time_scale` times its seconds, so that results reach the searcher and the scheduler in about the
order they would on the recording machine (at time_scale 0.01 a 2 s epoch sleeps 20 ms; Tune's
own work per result, milliseconds, and per trial start, tenths of a second, comes on top and is not
simulated). `node` says "replay:recorded" or "replay:predicted".

No checkpoints: a retried or resumed trial replays its curve from epoch 1 again, the same curve
(same seed, same configuration); results.collect keeps one row per epoch, and ASHA and the
searchers skip epochs they have already seen. The report comes out as without the interruption.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ray import tune
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Uniform

from model.config import Config
from model.net import parameters_of
from search.replay.records import Record, searched

CURVE_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_second")
# The categorical keys that bend a learning curve: a prediction's shape comes from curves that share them.
SHAPE_KEYS = ("schedule", "optimizer", "batch_size")
NOISY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")  # what a weight seed changes
# K. On the CPU record every K from 1 to 12 predicts about as badly (search_efficiency.py --loo).
NEIGHBOURS = 5
REPLAY_CPUS = 0.01  # a replayed trial only sleeps: the search's concurrency is not limited by local CPUs
EPOCH_SLEEP = 0.05  # real seconds the record's median epoch sleeps in `python -m search.run replay=...`


@dataclass(frozen=True)
class Answer:
    curves: dict[str, np.ndarray]  # CURVE_KEYS -> one value per epoch
    source: str  # "recorded" or "predicted"
    params: int | None  # trainable parameters; None when predicted


class Surrogate:
    """A record's curves, looked up or predicted for any configuration of the record's space."""

    def __init__(self, record: Record, neighbours: int = NEIGHBOURS) -> None:
        self.domains = searched(record.params())
        self.keys = tuple(sorted(self.domains))
        self.neighbours = neighbours
        self.max_epochs = record.max_epochs
        runs: dict[tuple, list[np.ndarray]] = {}  # configuration -> its recorded runs [key, epoch]
        self.params: dict[tuple, int] = {}
        self.peak_lr: dict[tuple, float] = {}
        by_trial = {tid: e for tid, e in record.epochs.groupby("trial_id")}
        for row in record.trials.to_dict("records"):
            key = self.key(row)
            curve = by_trial[row["trial_id"]].sort_values("epoch")
            runs.setdefault(key, []).append(curve[list(CURVE_KEYS)].to_numpy(dtype=float).T)
            self.params[key], self.peak_lr[key] = int(row["params"]), float(row["lr"])
        self.runs = runs
        self.points = list(runs)
        self.means = np.stack([np.mean(runs[p], axis=0) for p in self.points])  # [point, key, epoch]
        cube = np.stack([self.encode(dict(zip(self.keys, p))) for p in self.points])  # [point, column] in [0, 1]
        columns = self.columns()
        self.relevance = relevance(cube, columns, self.means[:, CURVE_KEYS.index("val_acc"), -1])
        self.scale = np.sqrt(np.array([self.relevance[k] for k in columns]))  # per column
        self.encoded = cube * self.scale
        pairs = [r for r in runs.values() if len(r) > 1]
        self.noise = np.stack([(r[0] - r[1]) / math.sqrt(2) for r in pairs]) if pairs else None
        every_run = np.stack([run for r in runs.values() for run in r])  # [run, key, epoch]
        self.low, self.high = every_run.min(axis=0), every_run.max(axis=0)  # the record's range per key and epoch
        self.shape_keys = tuple(k for k in SHAPE_KEYS if k in self.domains)  # those this record's space varies
        self.shapes = [tuple(p[self.keys.index(k)] for k in self.shape_keys) for p in self.points]

    def key(self, config: dict) -> tuple:
        """The searched keys' values as plain Python values: equal configurations, equal keys."""
        return tuple(np.asarray(config[k]).item() for k in self.keys)

    def encode(self, config: dict) -> np.ndarray:
        """The configuration as a point in [0, 1]^d (see the module docstring)."""
        parts: list[float] = []
        for k in self.keys:
            domain, value = self.domains[k], np.asarray(config[k]).item()
            if isinstance(domain, Categorical):
                categories = list(domain.categories)
                if value not in categories:
                    raise ValueError(f"{k}={value!r} is not in the record's space; choose one of {categories}")
                if _ordered(categories):
                    parts.append(categories.index(value) / max(len(categories) - 1, 1))
                else:  # one-hot / sqrt(2): two different categories are 1 apart
                    parts.extend((c == value) / math.sqrt(2) for c in categories)
            elif isinstance(domain, (Float, Integer)):
                # Tune's randint excludes its upper bound
                lower, upper = domain.lower, domain.upper - (1 if isinstance(domain, Integer) else 0)
                sampler = domain.get_sampler()
                if isinstance(sampler, LogUniform):
                    value, lower, upper = math.log(value), math.log(lower), math.log(upper)
                elif not isinstance(sampler, Uniform):
                    raise ValueError(f"{k}: the replay scales uniform and log-uniform domains only, not {sampler}")
                parts.append((value - lower) / (upper - lower) if upper > lower else 0.0)
            else:
                raise ValueError(f"{k}: the replay cannot scale a {type(domain).__name__} domain")
        return np.asarray(parts)

    def columns(self) -> list[str]:
        """The key each column of `encode` belongs to (an unordered categorical key has one per category)."""
        return [k for k in self.keys for _ in range(_width(self.domains[k]))]

    def alike(self, config: dict) -> np.ndarray:
        """The recorded configurations (indices into points) whose curves may shape a prediction for
        `config`: those with its schedule, optimizer and batch size, giving up the last of these
        first where the record holds none with all of them (module docstring)."""
        wanted = tuple(np.asarray(config[k]).item() for k in self.shape_keys)
        for n in range(len(wanted), -1, -1):
            pool = np.array([i for i, s in enumerate(self.shapes) if s[:n] == wanted[:n]], dtype=int)
            if len(pool):
                return pool
        raise AssertionError("unreachable: with no key to match every configuration is alike")

    def _nearest(self, encoded: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The K nearest of `pool` to a point and their weights (1 / distance, summing to 1)."""
        distances = np.linalg.norm(self.encoded[pool] - encoded, axis=1)
        order = np.argsort(distances, kind="stable")[: self.neighbours]
        weights = 1.0 / np.maximum(distances[order], 1e-12)
        return pool[order], weights / weights.sum()

    def predict(self, config: dict) -> dict[str, np.ndarray]:
        """The noise-free prediction: the level of the K nearest, the shape of the K nearest alike,
        within the record's range (module docstring)."""
        encoded = self.encode(config) * self.scale
        nearest, weights = self._nearest(encoded, np.arange(len(self.points)))
        level = np.tensordot(weights, self.means[nearest], axes=1)[:, -1]  # [key]
        alike, alike_weights = self._nearest(encoded, self.alike(config))
        shape = np.tensordot(alike_weights, self.means[alike], axes=1)  # [key, epoch]
        last = shape[:, -1:]
        safe = np.abs(last) > 1e-12  # a key that ends at 0 keeps the shape's own values
        mean = np.where(safe, shape * level[:, None] / np.where(safe, last, 1.0), shape)
        lr = CURVE_KEYS.index("lr")
        schedules = self.means[alike, lr] / np.array([self.peak_lr[self.points[i]] for i in alike])[:, None]
        mean[lr] = float(config["lr"]) * (alike_weights @ schedules)
        mean = self._within_record(mean)
        return dict(zip(CURVE_KEYS, mean))

    def _within_record(self, curves: np.ndarray) -> np.ndarray:
        """[key, epoch] with every loss and accuracy held within the record's range at that epoch."""
        out = curves.copy()
        for k in NOISY_KEYS:
            i = CURVE_KEYS.index(k)
            out[i] = np.clip(out[i], self.low[i], self.high[i])
        return out

    def answer(self, config: dict, seed: int) -> Answer:
        """What the replay reports for `config` in a search with seed `seed` (module docstring)."""
        key = self.key(config)
        rng = np.random.default_rng(_entropy(seed, key))
        if key in self.runs:
            runs = self.runs[key]
            return Answer(dict(zip(CURVE_KEYS, runs[rng.integers(len(runs))])), "recorded", self.params[key])
        curves = np.stack([self.predict(config)[k] for k in CURVE_KEYS])
        if self.noise is not None:
            noise = self.noise[rng.integers(len(self.noise))] * rng.choice((-1.0, 1.0))
            for k in NOISY_KEYS:
                curves[CURVE_KEYS.index(k)] += noise[CURVE_KEYS.index(k)]
            curves = self._within_record(curves)
        return Answer(dict(zip(CURVE_KEYS, curves)), "predicted", None)


def _ordered(categories: list) -> bool:
    """Categories of numbers have an order (their rank); others (names, tuples) have none."""
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in categories)


def _width(domain: Any) -> int:
    """Columns a key takes in `Surrogate.encode`: one, or one per category of an unordered one."""
    return len(domain.categories) if isinstance(domain, Categorical) and not _ordered(domain.categories) else 1


def relevance(cube: np.ndarray, columns: list[str], final: np.ndarray) -> dict[str, float]:
    """Each key's weight in the distance (module docstring): how strongly it ranks `final`, one value
    per configuration. A key of one column: |Spearman's rho| with its scaled value; of several (one-hot
    categories): the correlation ratio of final's ranks over the categories. 0 for a key the record does
    not vary; every key 1 when none ranks anything (a record of one configuration, or equal finals)."""
    spread = _centred_ranks(final)
    names = list(dict.fromkeys(columns))
    weights = dict.fromkeys(names, 0.0)
    if spread.any():
        for name in names:
            part = cube[:, [i for i, c in enumerate(columns) if c == name]]
            if part.shape[1] == 1:
                x = _centred_ranks(part[:, 0])
                if x.any():
                    weights[name] = abs(float(x @ spread) / math.sqrt(float(x @ x) * float(spread @ spread)))
            else:
                group = part.argmax(axis=1)
                between = sum((group == g).sum() * spread[group == g].mean() ** 2 for g in np.unique(group))
                weights[name] = math.sqrt(between / float(spread @ spread))
    if not any(weights.values()):
        return dict.fromkeys(names, 1.0)
    return weights


def _centred_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks less their mean, ties given their mean rank (as Spearman's rho wants)."""
    ranks = pd.Series(x).rank().to_numpy()
    return ranks - ranks.mean()


def trial_params(config: dict, answer: Answer) -> int:
    """A replayed trial's parameters: recorded, or counted for a predicted configuration (exact:
    the network is built on the meta device) -- objective=val_acc,params needs them for every trial."""
    return answer.params if answer.params is not None else parameters_of(Config.from_flat(config))


def _entropy(seed: int, key: tuple) -> int:
    """A stable integer from the search seed and the configuration (Python's hash() is salted per process)."""
    text = json.dumps([seed, *key], default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def replay_trial(config: dict, surrogate: Surrogate, seed: int, time_scale: float) -> None:
    """The Tune function trainable of a replay; `surrogate` arrives through tune.with_parameters."""
    answer = surrogate.answer(config, seed)
    params = trial_params(config, answer)
    for epoch in range(surrogate.max_epochs):
        values = {k: float(v[epoch]) for k, v in answer.curves.items()}
        time.sleep(time_scale * values["seconds"])
        tune.report({"epoch": epoch + 1, **values, "params": params, "node": f"replay:{answer.source}"})


def replay_trainable(surrogate: Surrogate, seed: int, time_scale: float) -> Any:
    """The trainable to hand a Tuner in place of search.trainable's; the surrogate goes to the object store once."""
    return tune.with_resources(
        tune.with_parameters(replay_trial, surrogate=surrogate, seed=seed, time_scale=time_scale), {"cpu": REPLAY_CPUS}
    )


def replay_marks(record: Record, time_scale: float) -> dict:
    """What run.json adds for a replayed search: which curves answered it, and that seconds are simulated."""
    return {"replay": ",".join(record.paths), "replay_device": record.device, "time_scale": time_scale}


def time_scale_for(record: Record, epoch_sleep: float) -> float:
    """The time_scale at which the record's median epoch sleeps `epoch_sleep` seconds."""
    return epoch_sleep / float(np.median(record.epochs["seconds"]))
