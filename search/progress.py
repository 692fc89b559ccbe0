"""The live view of a search, as a Tune callback: never quiet, on a terminal or in a log file.

On a terminal (stderr), a frame redrawn every second: trials by outcome, elapsed time and an
estimate of the time left, the best trial so far and each running trial's epoch. Anywhere else (a
log file, a pipe), plain lines: one when the search starts, one per finished trial and a heartbeat
every minute, so a log of a long search shows its progress while it runs.

A trial counts as completed, pruned or errored only when Tune says it ended (on_trial_complete,
on_trial_error), or when a resumed search restores it finished: after Ctrl-C, Tune stops the
running trials without ending them, and they count as unfinished.

The time left is the epochs still expected (ASHA keeps 1/eta of the trials at each rung) at the
wall-clock pace of the epochs since the first result. It is recomputed at each result and counts
down in between.

Tune pickles callbacks into tuner.pkl when the Tuner is built, so the display (a rich Live, which
holds a lock and a thread) is created in `setup()` and left out of the pickled state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from time import monotonic

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.stopper import Stopper
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from results.numbers import clock, counted, number, percent
from results.status import ERROR, FINISHED, UNFINISHED, trial_status

HEARTBEAT = 60.0  # seconds between plain lines while nothing finishes
REFRESH = 1.0  # frames per second on a terminal: the clock ticks
# Seconds between looks at every trial from Tune's loop (which steps hundreds of times a second, on
# the driver, while slots wait for their next trial); results and trial ends update at once anyway.
STEP_EVERY = 0.5
# Frames on the terminal now. A second Ctrl-C skips on_experiment_end: the search stops them with
# stop_frames(), or rich's thread would go on drawing over its last words with the cursor hidden.
_FRAMES: list[Live] = []


def stop_frames() -> None:
    """Stops every live frame still drawn (leaving its last state on screen) and shows the cursor."""
    while _FRAMES:
        _FRAMES.pop().stop()


@dataclass(frozen=True)
class Row:
    """What the view shows of one trial."""

    trial_id: str
    state: str  # running, pending, or one of results.status.FINISHED
    epoch: int  # epochs reported
    value: float | None  # the metric at that epoch: what ranks the trial (results.status.ranked)


def expected_epochs(epoch: int, max_epochs: int, grace: int | None, eta: int | None) -> float:
    """Epochs a trial that has reported `epoch` epochs is expected to run in all: ASHA lets 1/eta of
    the trials through each rung (grace x eta^k epochs). Without grace and eta: max_epochs."""
    if grace is None or eta is None:
        return float(max_epochs)
    rungs, milestone = [], grace
    while milestone < max_epochs:
        rungs.append(milestone)
        milestone *= eta
    ahead = [r for r in rungs if r > epoch] + [max_epochs]  # a trial at a rung's epoch has passed it
    total, survive, previous = float(ahead[0]), 1.0, ahead[0]
    for milestone in ahead[1:]:
        survive /= eta
        total += survive * (milestone - previous)
        previous = milestone
    return total


class Progress(Callback):
    def __init__(
        self, total: int, max_epochs: int, shown: list[str], metric: str = "val_acc",
        grace: int | None = None, eta: int | None = None, stopper: Stopper | None = None,
    ) -> None:
        self.total = total  # trials the search will run
        # The search's stopper. Once it has stopped every trial (a device budget spent), the trials it
        # stopped ended as the tables say (pruned), where after Ctrl-C they are unfinished: Tune
        # marks both TERMINATED without ending them.
        self.stopper = stopper
        self.max_epochs = max_epochs
        self.shown = shown  # config keys worth showing for the best trial: the searched ones
        self.metric = metric
        self.grace, self.eta = grace, eta  # ASHA's, for the estimate; None: no trial stops early
        self._live: Live | None = None  # the terminal's frame; None in plain-line mode
        self._console: Console | None = None
        self._outcomes: dict[str, str] = {}  # trial id -> completed / pruned / error
        self._newest: dict[str, tuple[int, float]] = {}  # trial id -> (epoch, value) of its newest result
        self._configs: dict[str, dict] = {}
        self._rows: tuple[Row, ...] = ()  # replaced whole, so the display thread reads a consistent set
        self._looked = False  # whether this session has seen the trials yet
        self._ended = False  # the experiment has ended: what did not finish is unfinished
        self._started = 0.0
        self._first_result: tuple[float, int] | None = None  # (time, epochs done) at this session's first result
        self._estimate: tuple[float, float] = (float("nan"), 0.0)  # (seconds left, when estimated)
        self._last_line = 0.0
        self._stepped = -math.inf  # when on_step_begin last looked at the trials

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_live": None, "_console": None}

    # --- Tune's events ------------------------------------------------------------------------

    def setup(self, **info) -> None:
        self._started = self._last_line = monotonic()
        self._console = Console(stderr=True)
        if self._console.is_terminal:
            self._live = Live(console=self._console, get_renderable=self.frame, refresh_per_second=REFRESH)
            self._live.start()
            _FRAMES.append(self._live)
        else:
            asha = f"ASHA grace {self.grace}, eta {self.eta}" if self.grace else "no early stopping"
            self._line(f"starting {self._planned()} ({asha}); "
                       f"a line per finished trial and every {HEARTBEAT:.0f} s")

    def on_step_begin(self, iteration: int, trials: list[Trial], **info) -> None:
        if monotonic() - self._stepped < STEP_EVERY:
            return
        self._stepped = monotonic()
        self._first_look(trials)
        self._update(trials)

    def on_step_end(self, iteration: int, trials: list[Trial], **info) -> None:
        if self._live is None and monotonic() - self._last_line >= HEARTBEAT:
            self._line(self.heartbeat())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info) -> None:
        # Tune updates the trial's own last_result after the callbacks have seen the result.
        if self.metric in result:
            self._newest[trial.trial_id] = (result["training_iteration"], result[self.metric])
        self._update(trials)
        if self._first_result is None:
            self._first_result = (monotonic(), self._done())
        self._estimate = (self._seconds_left(), monotonic())

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._end(trials, trial, trial_status("TERMINATED", self._epoch(trial), self.max_epochs))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._end(trials, trial, ERROR)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        self._first_look(trials)  # a restored search with nothing left to run may end without a step
        self._ended = True
        self._update(trials)
        self._estimate = (self._seconds_left(), monotonic())
        if self._live is not None:
            if self._live in _FRAMES:
                _FRAMES.remove(self._live)
            self._live.stop()  # draws the last frame once more, where it stands, and leaves it
            self._live = None
        else:
            self._line(self.ending())

    # --- state --------------------------------------------------------------------------------

    def _end(self, trials: list[Trial], trial: Trial, outcome: str) -> None:
        self._outcomes[trial.trial_id] = outcome
        self._update(trials)
        self._estimate = (self._seconds_left(), monotonic())
        if self._live is None:
            row = next(r for r in self._rows if r.trial_id == trial.trial_id)
            value = f" ({self.metric} {self._value(row.value)})" if row.value is not None else ""
            best = self._best()
            best_text = f"best {self._value(best.value)} ({best.trial_id})" if best else None
            parts = (f"trial {trial.trial_id} {outcome} at epoch {row.epoch} of {self.max_epochs}{value}",
                     self.counts_text(), best_text, f"~{clock(self.seconds_left())} left")
            self._line("; ".join(part for part in parts if part))

    def _first_look(self, trials: list[Trial]) -> None:
        """Trials already ended at this session's first look were restored finished."""
        if self._looked:
            return
        self._looked = True
        for trial in trials:
            if trial.status in (Trial.TERMINATED, Trial.ERROR):
                self._outcomes[trial.trial_id] = trial_status(trial.status, self._epoch(trial), self.max_epochs)

    def _epoch(self, trial: Trial) -> int:
        last = (trial.last_result or {}).get("training_iteration", 0)
        return max(last, self._newest.get(trial.trial_id, (0, None))[0])

    def _update(self, trials: list[Trial]) -> None:
        rows = []
        for trial in trials:
            self._configs[trial.trial_id] = trial.config
            epoch = self._epoch(trial)
            value = self._newest.get(trial.trial_id, (0, (trial.last_result or {}).get(self.metric)))[1]
            state = self._outcomes.get(trial.trial_id) or self._open_state(trial)
            rows.append(Row(trial.trial_id, state, epoch, value))
        self._rows = tuple(rows)

    def _open_state(self, trial: Trial) -> str:
        if self._ended and self.stopper is not None and self.stopper.stop_all() and trial.status == Trial.TERMINATED:
            return trial_status(trial.status, self._epoch(trial), self.max_epochs)
        if self._ended:
            return UNFINISHED  # stopped by Ctrl-C (Tune marks it terminated without ending it)
        return "running" if trial.status == Trial.RUNNING else "pending"

    def _done(self) -> int:
        return sum(r.epoch for r in self._rows)

    def _seconds_left(self) -> float:
        """The epochs still expected, at the wall-clock pace of the epochs since the first result."""
        open_rows = [r for r in self._rows if r.state not in FINISHED]
        if not open_rows and len(self._rows) >= self.total:
            return 0.0
        if self._first_result is None or self._done() <= self._first_result[1]:
            return float("nan")
        started_at, done_at_start = self._first_result
        if monotonic() <= started_at:  # only results that came together: no pace yet
            return float("nan")
        pace = (monotonic() - started_at) / (self._done() - done_at_start)  # seconds per epoch, whole search
        not_started = max(self.total - len(self._rows), 0)
        expected = not_started * expected_epochs(0, self.max_epochs, self.grace, self.eta)
        expected += sum(expected_epochs(r.epoch, self.max_epochs, self.grace, self.eta) - r.epoch for r in open_rows)
        return expected * pace

    def seconds_left(self) -> float:
        """The latest estimate, counted down since it was made."""
        left, at = self._estimate
        return max(left - (monotonic() - at), 0.0)

    # --- what is shown ------------------------------------------------------------------------

    def counts_text(self) -> str:
        """'2 running, 5 completed, 3 pruned, 0 error of 64 trials' (pending and unfinished when there are)."""
        states = [r.state for r in self._rows]
        shown = ["running", *(s for s in ("pending",) if s in states), *FINISHED, *(s for s in (UNFINISHED,) if s in states)]
        return ", ".join(f"{states.count(s)} {s}" for s in shown) + f" of {counted(self.total, 'trial')}"

    def _best(self) -> Row | None:
        """The trial with the highest metric at its latest epoch: the one notion of best, as the
        tables rank trials by their last epoch (a running trial by its newest)."""
        return max((r for r in self._rows if r.value is not None), key=lambda r: r.value, default=None)

    def best_text(self) -> str | None:
        best = self._best()
        if best is None:
            return None
        config = self._configs.get(best.trial_id, {})
        shown = " ".join(f"{k}={number(config.get(k))}" for k in self.shown)
        return f"best {self.metric} {self._value(best.value)} (trial {best.trial_id}): {shown}"

    def clock_text(self) -> str:
        return f"{clock(monotonic() - self._started)} elapsed, ~{clock(self.seconds_left())} left"

    def heartbeat(self) -> str:
        running = [f"{r.trial_id} epoch {r.epoch}/{self.max_epochs}" for r in self._rows if r.state == "running"]
        best = self.best_text()
        return "; ".join(part for part in (self.counts_text(), ", ".join(running), best, self.clock_text()) if part)

    def ending(self) -> str:
        not_started = max(self.total - len(self._rows), 0)
        counts = self.counts_text()
        if any(r.state == UNFINISHED for r in self._rows):  # Ctrl-C
            head, counts = "stopped", counts + (f" ({not_started} not started)" if not_started else "")
        elif not_started:  # the searcher started no more (a device-hour budget spent)
            head = f"finished after {len(self._rows)} of {counted(self.total, 'trial')}"
        else:
            head = "finished"
        return "; ".join(part for part in (head, counts, self.best_text()) if part)

    def _planned(self) -> str:
        """'8 trials of up to 3 epochs', '1 trial of up to 1 epoch'."""
        return f"{counted(self.total, 'trial')} of up to {counted(self.max_epochs, 'epoch')}"

    def frame(self) -> RenderableType:
        """The terminal's frame, built from the latest rows (called by rich's refresh thread)."""
        parts: list[RenderableType] = [self.counts_text(), self.clock_text()]
        best = self.best_text()
        parts.append(best if best else f"starting {self._planned()}")
        running = Table("trial", "epoch", self.metric, box=None, padding=(0, 2, 0, 0))
        for r in self._rows:
            if r.state == "running":
                running.add_row(r.trial_id, f"{r.epoch}/{self.max_epochs}", self._value(r.value))
        if running.row_count:
            parts.append(running)
        return Group(*parts)

    def _value(self, value: float | None) -> str:
        return percent(value) if self.metric.endswith("acc") else number(value)

    def _line(self, text: str) -> None:
        self._last_line = monotonic()
        self._console.print(f"[{clock(self._last_line - self._started)}] {text}", markup=False, highlight=False, soft_wrap=True)
