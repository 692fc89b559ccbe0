"""The Optuna study of a search, stored as Optuna's own journal file inside the experiment folder.

    optuna-dashboard runs/NAME/optuna-journal.log           # the study in a browser, live
    study = search.strategy.study.load("runs/NAME")                  # or, as with any Optuna journal:
    optuna.load_study(study_name="search", storage=JournalStorage(JournalFileBackend(path)))

The search's driver is the journal's only writer (search.strategy.searcher.HonestOptunaSearch appends to it
as it asks, reports and tells), so a plain file needs no database and no locking beyond Optuna's
own. Every Optuna trial carries its Tune trial id as the user attribute "trial_id", the id of the
result tables.
"""

from __future__ import annotations

import json
import os

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_FILE = "optuna-journal.log"
STUDY_NAME = "search"
TRIAL_ID = "trial_id"  # the user attribute holding the Tune trial id


def journal_path(experiment: str | os.PathLike) -> str | None:
    """Where a search's journal lives; None for an experiment at a URI (s3://...): Optuna's journal
    is a local file, so such a search keeps its study in Tune's snapshots only."""
    path = os.fspath(experiment)
    return None if "://" in path else os.path.join(path, JOURNAL_FILE)


class DriverJournal(JournalFileBackend):
    """Optuna's journal file, appended to as its only writer does it: one write per batch of lines,
    without Optuna's lock file and fsync. A search's driver is the only writer, and after a crash
    the searcher puts back the journal of Tune's last snapshot anyway (HonestOptunaSearch.restore),
    so neither buys anything here; together they cost about 10 ms a suggestion (a lock, an fsync
    per parameter: 23 in space=full), on the driver's loop while a slot waits for its next trial.
    A reader (optuna-dashboard) sees whole lines: each batch is written with one write()."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def append_logs(self, logs: list[dict]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with open(self.path, "ab") as f:
            f.write(text.encode())


def storage(path: str | os.PathLike) -> JournalStorage:
    """The journal at `path` as an Optuna storage (the file is created when missing)."""
    return JournalStorage(DriverJournal(os.fspath(path)))


def load(experiment: str | os.PathLike) -> optuna.Study:
    """The study of the search at `experiment`; ValueError when it has no journal."""
    path = journal_path(experiment)
    if path is None or not os.path.isfile(path):
        raise ValueError(f"{experiment} has no {JOURNAL_FILE}: its search kept the study in memory only")
    return optuna.load_study(study_name=STUDY_NAME, storage=storage(path))
