"""A rich live view of a search, as a Tune callback.

Tune pickles callbacks into tuner.pkl when the Tuner is built, so the Live display (which holds a
lock and a thread) is created in `setup()` and left out of the pickled state.
"""

from __future__ import annotations

import time

from ray.tune import Callback
from ray.tune.experiment import Trial
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table


def outcome(trial: Trial, max_epochs: int) -> str:
    """running / pending / completed / pruned / error, as the result tables name them."""
    if trial.status == Trial.ERROR:
        return "error"
    if trial.status == Trial.TERMINATED:
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        return "completed" if epochs >= max_epochs else "pruned"
    return "running" if trial.status == Trial.RUNNING else "pending"


class Progress(Callback):
    def __init__(self, total: int, max_epochs: int, shown: list[str], metric: str = "val_acc") -> None:
        self.total = total  # trials the search will run
        self.max_epochs = max_epochs
        self.shown = shown  # config keys worth showing for the best trial: the searched ones
        self.metric = metric
        self._live: Live | None = None
        self._started = 0.0
        # Tune updates a trial's last_result and metric_analysis after the callbacks see a result:
        # the newest (epoch, value) of each trial is kept here.
        self._newest: dict[str, tuple[int, float]] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_live": None}

    def setup(self, **info) -> None:
        self._started = time.monotonic()
        self._live = Live(Table(), console=Console(stderr=True), refresh_per_second=2, transient=False)
        self._live.start()

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info) -> None:
        if self.metric in result:
            self._newest[trial.trial_id] = (result["training_iteration"], result[self.metric])
        self._show(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._show(trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._show(trials)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        self._show(trials)
        if self._live:
            self._live.stop()
            if not self._live.console.is_terminal:
                self._live.console.print()  # rich leaves the cursor after a non-terminal Live
            self._live = None

    def _show(self, trials: list[Trial]) -> None:
        if self._live:
            self._live.update(self.render(trials, time.monotonic() - self._started), refresh=True)

    def render(self, trials: list[Trial], elapsed: float) -> Group:
        outcomes = [outcome(t, self.max_epochs) for t in trials]
        counts = {k: outcomes.count(k) for k in ("running", "completed", "pruned", "error")}
        scores = {t.trial_id: self._best_score(t) for t in trials}
        scored = [t for t in trials if scores[t.trial_id] is not None]
        summary = "  ".join(f"{k} [bold]{v}[/]" for k, v in counts.items())
        summary += f" of {self.total} trials   elapsed {_clock(elapsed)}"
        summary += f", ~{_clock(self._remaining(trials, outcomes, elapsed))} left"
        parts: list = [summary]
        if scored:
            best = max(scored, key=lambda t: scores[t.trial_id])
            config = ", ".join(f"{k}={_short(best.config.get(k))}" for k in self.shown)
            parts.append(f"best {self.metric} [bold green]{scores[best.trial_id]:.4f}[/] ({best.trial_id}): {config}")
        running = Table("trial", "epoch", self.metric, title=None, box=None)
        for t, o in zip(trials, outcomes):
            if o == "running":
                last = t.last_result or {}
                epoch, value = self._newest.get(t.trial_id, (last.get("training_iteration", 0), last.get(self.metric)))
                running.add_row(t.trial_id, f"{epoch}/{self.max_epochs}", "-" if value is None else f"{value:.4f}")
        if running.row_count:
            parts.append(running)
        return Group(*parts)

    def _best_score(self, trial: Trial) -> float | None:
        newest = self._newest.get(trial.trial_id, (0, None))[1]
        seen = [v for v in ((trial.metric_analysis.get(self.metric) or {}).get("max"), newest) if v is not None]
        return max(seen) if seen else None

    def _remaining(self, trials: list[Trial], outcomes: list[str], elapsed: float) -> float:
        """Seconds left: epochs still expected, at the wall-clock pace of the epochs done so far."""
        epochs = [(t.last_result or {}).get("training_iteration", 0) for t in trials]
        done = sum(epochs)
        if not done:
            return float("nan")
        finished = [e for e, o in zip(epochs, outcomes) if o in ("completed", "pruned", "error")]
        expected = sum(finished) / len(finished) if finished else self.max_epochs
        left = (self.total - len(trials)) * expected
        left += sum(max(expected - e, 0) for e, o in zip(epochs, outcomes) if o in ("running", "pending"))
        return left * elapsed / done


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing measured yet
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
