"""A trial's fate and rank, decided in one place: the result tables, the live view, the searcher,
importance and best.json agree.

A trial that Tune terminated without error is completed when it ran the search's max_epochs, and
pruned (ASHA stopped it) when it ran fewer. Tune's other statuses mean the search was interrupted.

One notion of best: a trial's validation accuracy at its LAST epoch. TPE is told exactly that for
a completed trial, ASHA compares trials at a rung by the epoch they stand at, and best.json and
every table rank by it: completed trials first, then pruned ones by how far they got (as Optuna's
TPE ranks pruned trials). Not the maximum over epochs, which is optimistic over 30 noisy
evaluations and would pick an epoch the retrain cannot stop at.
"""

from __future__ import annotations

import pandas as pd

from results.schema import STATUSES

COMPLETED, PRUNED, ERROR, UNFINISHED = STATUSES
FINISHED = (COMPLETED, PRUNED, ERROR)  # a resumed search does not run these again


def ran_to_the_end(epochs_run: int, max_epochs: int) -> bool:
    """True for a trial that trained all its epochs; False for one that ASHA stopped earlier."""
    return epochs_run >= max_epochs


def trial_status(tune_status: str, epochs_run: int, max_epochs: int) -> str:
    """One of STATUSES from Tune's trial status (ERROR, TERMINATED, PENDING, RUNNING, PAUSED)."""
    if tune_status == "ERROR":
        return ERROR
    if tune_status == "TERMINATED":
        return COMPLETED if ran_to_the_end(epochs_run, max_epochs) else PRUNED
    return UNFINISHED


def ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """The completed and pruned trials, best first: completed by last validation accuracy, then
    pruned by epochs reached and their last accuracy (ties by trial id)."""
    finished = trials[trials["status"].isin([COMPLETED, PRUNED])]
    order = finished.assign(_pruned=finished["status"] == PRUNED).sort_values(
        ["_pruned", "epochs_run", "last_val_acc", "trial_id"],
        ascending=[True, False, False, True],
        na_position="last",
    )
    return order.drop(columns="_pruned").reset_index(drop=True)
