"""Warm starts: `warm_start=runs/OLD[,runs/OTHER]` hands TPE the finished trials of earlier
searches of the same space and width before it suggests anything, so a second search does not start
from nothing (Optuna adds finished trials to a study; Ray Tune cannot: ray-project/ray#18847).

Each completed or pruned trial of a source (read from its report tables, so a URI works as a
local folder does) becomes an Optuna trial exactly as this search's own would be told
(search.strategy.searcher): its validation accuracy at every epoch as intermediate values, and
COMPLETE with its last one when it ran this search's max_epochs to the end, else PRUNED. A source
trial of another schedule length (its max_epochs differed) is told as PRUNED at the epoch it
reached: its accuracies are not those of this search's schedule, and TPE ranks every pruned trial
below the completed ones. Trials that errored or never ended are left out; so is a trial whose
values fall outside this search's space (a searched value out of its range, or a fixed value
that differs), with one note per source. The warm trials count towards TPE's random start-up
(that is the point: with 10 or more, TPE models from the first suggestion; with fewer, the rest of
the start-up is drawn from a stream of this search's own, sampler_seed) and carry the user attributes
`warm_start` (the source as given) and `warm_start_trial` (its trial id), for optuna-dashboard.
They are not trials of this search: its tables, rungs, device budget and live view know only its
own. A resume never reads the sources again: the study (journal and Tune's snapshot) holds them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
import pyarrow.fs as pafs
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Domain

import results
from results.load import run_kind
from results.schema import expand_home, join, reachable_type, read_json
from results.status import COMPLETED, PRUNED, ran_to_the_end
from search.runtime.lock import held_message, holder
from search.runtime.storage import resolve
from search.settings import METRIC, RUN_FILE

SOURCE_ATTR, TRIAL_ATTR = "warm_start", "warm_start_trial"  # user attributes of a warm trial
SCHEDULE_KEY = "epochs"  # a fixed value that may differ: the source's max_epochs (see the docstring)


@dataclass(frozen=True)
class WarmStart:
    trials: tuple[FrozenTrial, ...]  # for HonestOptunaSearch(warm=...)
    notes: tuple[str, ...]  # one line per source: what was taken, what was left out and why


def sources(text: str) -> list[str]:
    """The experiments named by warm_start=A,B (as given, `~` expanded); ValueError on an empty name
    or one folder named twice, however it is written (runs/X, ./runs/X/, its absolute path)."""
    names = [expand_home(part.strip(), "warm_start") for part in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise ValueError(f"warm_start={text!r}: give experiment folders, comma-separated (warm_start=runs/OLD,runs/OTHER)")
    folders = [resolve(name) for name in names]
    twice = sorted({name for name, folder in zip(names, folders) if folders.count(folder) > 1})
    if twice:
        raise ValueError(f"warm_start={text}: {', '.join(twice)} named twice")
    return names


def check(text: str, space: str, width: float = 1.0, replay: bool = False) -> None:
    """Each source is a search of `space` at `width` that has ended and whose report can be read;
    ValueError (one line) otherwise. Reads only. Another width is refused because its channel
    counts lie outside this search's space: every one of its trials would be left out. A replay's
    accuracies are a record's curves, mostly predicted: a source for another replay (`replay`), never
    for a search that trains."""
    for source in sources(text):
        kind = reachable_type(source, f"warm_start={source}")
        if kind != pafs.FileType.Directory:
            what = "does not exist" if kind == pafs.FileType.NotFound else "is a file"
            raise ValueError(f"warm_start={source} {what}; give experiment folders such as runs/NAME")
        run_file = join(source, RUN_FILE)
        if reachable_type(run_file, f"warm_start={source}") != pafs.FileType.File:
            raise ValueError(f"warm_start={source}: no {RUN_FILE} there, so it is not a search (give experiment folders "
                             "such as runs/NAME)")
        recorded = read_json(run_file)
        theirs = recorded.get("space") if isinstance(recorded, dict) else None
        if theirs != space:
            raise ValueError(f"warm_start={source}: a search of space={theirs}, not space={space}; a warm start takes "
                             "earlier searches of the same space")
        theirs = recorded.get("width", 1.0)  # run.json files from before width= were all at 1
        if theirs != width:
            raise ValueError(f"warm_start={source}: a search at width={theirs:g}, not width={width:g}; a warm start "
                             "takes earlier searches at the same width")
        if run_kind(recorded) == "replay" and not replay:
            raise ValueError(f"warm_start={source}: a replay of recorded curves (replay={recorded['replay']}), whose "
                             "accuracies are predictions; a search that trains warm-starts from searches that trained")
        in_use = holder(source)
        if in_use is not None:  # its report is missing or out of date until it ends
            raise ValueError(f"warm_start={held_message(source, in_use)}")
        _finished(source)


def sampler_seed(seed: int, text: str) -> int:
    """TPE's seed in a search warm-started from `text` (warm_start= as recorded): a stream of its
    own. With fewer warm trials than TPE's random start-up, the next suggestions are random draws,
    and under `seed` alone they would repeat those of a source searched with the same seed (0 unless
    given), configurations TPE already holds. The same at the start and on every resume."""
    if not text:
        return seed
    return int(np.random.SeedSequence([seed, zlib.crc32(text.encode())]).generate_state(1)[0])


def load(text: str, param_space: dict, max_epochs: int) -> WarmStart:
    """The warm trials of every source named in `text`, for a search of `param_space` (a Tune param
    space: domains and fixed values) and `max_epochs`."""
    trials: list[FrozenTrial] = []
    notes = []
    for source in sources(text):
        finished, epochs = _finished(source)
        taken, note = from_tables(finished, epochs, param_space, max_epochs, source)
        trials += taken
        notes.append(note)
    return WarmStart(tuple(trials), tuple(notes))


def from_tables(trials: pd.DataFrame, epochs: pd.DataFrame, param_space: dict, max_epochs: int,
                source: str) -> tuple[list[FrozenTrial], str]:
    """Warm trials from a source's trials and epochs tables (results.schema's TRIALS and EPOCHS
    columns: trial_id, status, the config, and each epoch's val_acc), and the note saying what was
    taken. Trials other than completed and pruned ones are ignored."""
    distributions = OptunaSearch.convert_search_space(param_space)
    fixed = {k: v for k, v in param_space.items() if not isinstance(v, Domain) and k != SCHEDULE_KEY}
    curves = {trial_id: dict(zip(group["epoch"], group[METRIC]))
              for trial_id, group in epochs.sort_values(["trial_id", "epoch"]).groupby("trial_id")}
    taken: list[FrozenTrial] = []
    left_out: list[str] = []
    for row in trials[trials["status"].isin([COMPLETED, PRUNED])].sort_values("trial_id").itertuples(index=False):
        row = row._asdict()
        values = {int(epoch): float(value) for epoch, value in curves.get(row["trial_id"], {}).items()
                  if pd.notna(value)}
        if not values:  # ended before its first result: nothing to learn from
            continue
        outside = _outside({k: _plain(row.get(k)) for k in distributions}, distributions) or next(
            (f"{k}={_plain(row.get(k))!r} (this space: {v!r})" for k, v in fixed.items() if _plain(row.get(k)) != v), None)
        if outside:
            left_out.append(f"{row['trial_id']}: {outside}")
            continue
        last = max(values)
        complete = (row["status"] == COMPLETED and ran_to_the_end(last, max_epochs)
                    and _plain(row.get(SCHEDULE_KEY)) == max_epochs)
        taken.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE if complete else TrialState.PRUNED,
            value=values[last],  # a pruned trial's value is its last intermediate one, as Study.tell makes it
            params={k: _plain(row[k]) for k in distributions},
            distributions=distributions,
            intermediate_values=values,
            user_attrs={SOURCE_ATTR: source, TRIAL_ATTR: row["trial_id"]},
        ))
    complete = sum(t.state == TrialState.COMPLETE for t in taken)
    note = (f"warm start from {source}: {len(taken)} finished trials ({complete} completed, "
            f"{len(taken) - complete} pruned or of another schedule length)")
    if left_out:
        note += f"; {len(left_out)} left out, outside this space (first: {left_out[0]})"
    return taken, note


def _finished(source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The source's trials and epochs tables; ValueError when it has no finished trial."""
    try:
        found = results.load(source)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"warm_start={source}: its results cannot be read ({e})") from None
    if not found.trials["status"].isin([COMPLETED, PRUNED]).any():
        raise ValueError(f"warm_start={source}: no finished trial to start from")
    return found.trials, found.epochs


def _outside(params: dict, distributions: dict) -> str | None:
    """The first searched value that this space's distribution does not hold, as key=value."""
    for key, distribution in distributions.items():
        try:
            optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.0, params={key: params[key]},
                                      distributions={key: distribution})
        except ValueError:
            return f"{key}={params[key]!r}"
    return None


def _plain(value):
    """A table's value as the config has it: numpy scalars as Python numbers."""
    return value.item() if hasattr(value, "item") else value
