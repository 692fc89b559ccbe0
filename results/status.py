"""A trial's fate, decided in one place: the result tables, the live view and the searcher agree.

A trial that Tune terminated without error is completed when it ran the search's max_epochs, and
pruned (ASHA stopped it) when it ran fewer. Tune's other statuses mean the search was interrupted.
"""

from __future__ import annotations

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
