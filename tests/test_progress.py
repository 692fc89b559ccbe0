"""The live view (search.progress) fed Tune's events by hand, on a clock the test moves: counts from
events, Ctrl-C, plain lines and heartbeats off a terminal, a ticking frame on one, a steady estimate.
A real search's plain lines are checked in tests/test_study.py."""

from __future__ import annotations

import heapq
import io
import pickle
from types import SimpleNamespace

import pytest
from rich.console import Console

import search.progress
from search.progress import HEARTBEAT, Progress, expected_epochs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(search.progress, "monotonic", fake)
    return fake


class Log:
    """What the view wrote to stderr (pytest's capture: not a terminal, as a log file)."""

    def __init__(self, capsys) -> None:
        self.capsys, self.text = capsys, ""

    def lines(self) -> list[str]:
        self.text += self.capsys.readouterr().err
        return self.text.splitlines()


@pytest.fixture
def stderr(capsys) -> Log:
    return Log(capsys)


def _trial(trial_id, status="PENDING", epochs=0, best=None, lr=1e-3):
    return SimpleNamespace(
        trial_id=trial_id, status=status, config={"lr": lr},
        last_result={"training_iteration": epochs, "val_acc": best} if epochs else {},
        metric_analysis={"val_acc": {"max": best}} if epochs else {},
    )


def _result(progress, trials, trial, epoch, value):
    progress.on_trial_result(0, trials, trial, {"training_iteration": epoch, "val_acc": value})
    trial.last_result = {"training_iteration": epoch, "val_acc": value}  # Tune updates it after the callbacks
    trial.metric_analysis = {"val_acc": {"max": max(value, trial.metric_analysis.get("val_acc", {}).get("max", 0))}}


def _text(renderable) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_asha_expected_epochs_match_the_ideal_bracket():
    # grace 1, eta 2, 4 epochs: all run 1 epoch, half reach 2, a quarter reach 4.
    assert expected_epochs(0, 4, 1, 2) == pytest.approx(1 + 0.5 * 1 + 0.25 * 2)
    assert expected_epochs(1, 4, 1, 2) == pytest.approx(2 + 0.5 * 2)  # past the first rung
    assert expected_epochs(2, 4, 1, 2) == 4
    # The standard budget's ASHA (docs/cluster.md): 3 + 6/3 + 18/9 + 3/27 = 7.1 epochs a trial.
    assert expected_epochs(0, 30, 3, 3) == pytest.approx(3 + 6 / 3 + 18 / 9 + 3 / 27)
    assert expected_epochs(0, 30, None, None) == 30  # no early stopping known


def test_counts_come_from_tunes_events_and_the_best_trial_is_shown(clock, stderr):
    progress = Progress(total=5, max_epochs=3, shown=["lr"])
    progress.setup()
    trials = [_trial("done"), _trial("cut"), _trial("boom"), _trial("busy")]
    progress.on_step_begin(0, trials)
    for trial in trials:
        trial.status = "RUNNING"
    _result(progress, trials, trials[0], 3, 0.91)
    trials[0].status = "TERMINATED"
    progress.on_trial_complete(0, trials, trials[0])
    _result(progress, trials, trials[1], 1, 0.70)
    trials[1].status = "TERMINATED"
    progress.on_trial_complete(0, trials, trials[1])
    trials[2].status = "ERROR"
    progress.on_trial_error(0, trials, trials[2])
    progress.on_trial_result(0, trials, trials[3], {"training_iteration": 2, "val_acc": 0.95})  # newest, before Tune's record
    clock.now += 60
    text = _text(progress.frame())
    assert "1 running, 1 completed, 1 pruned, 1 error of 5 trials" in text
    assert "best val_acc 95.00% (trial busy): lr=0.001" in text
    assert ["busy", "2/3", "95.00%"] in [line.split() for line in text.splitlines()]
    assert "0:01:00 elapsed" in text and "left" in text


def test_the_best_trial_is_ranked_by_its_last_epoch_as_the_tables_rank_it(clock, stderr):
    progress = Progress(total=2, max_epochs=2, shown=["lr"])
    progress.setup()
    peaked, steady = _trial("peaked", "RUNNING"), _trial("steady", "RUNNING")
    trials = [peaked, steady]
    progress.on_step_begin(0, trials)
    _result(progress, trials, peaked, 1, 0.90)
    _result(progress, trials, peaked, 2, 0.70)  # ends below its peak
    _result(progress, trials, steady, 2, 0.80)
    for trial in trials:
        trial.status = "TERMINATED"
        progress.on_trial_complete(0, trials, trial)
    progress.on_experiment_end(trials)
    assert "best val_acc 80.00% (trial steady)" in stderr.lines()[-1]


def test_ctrl_c_leaves_interrupted_trials_unfinished_in_one_last_line(clock, stderr):
    progress = Progress(total=4, max_epochs=3, shown=["lr"])
    progress.setup()
    trials = [_trial("a", "RUNNING"), _trial("b", "RUNNING")]
    progress.on_step_begin(0, trials)
    _result(progress, trials, trials[0], 3, 0.8)
    trials[0].status = "TERMINATED"
    progress.on_trial_complete(0, trials, trials[0])
    _result(progress, trials, trials[1], 1, 0.6)
    trials[1].status = "TERMINATED"  # what Tune does to a running trial on Ctrl-C, without ending it
    progress.on_experiment_end(trials)
    lines = stderr.lines()
    assert "stopped; 0 running, 1 completed, 0 pruned, 0 error, 1 unfinished of 4 trials (2 not started)" in lines[-1]
    assert sum("stopped" in line for line in lines) == 1 and not any("pruned at" in line for line in lines)


def test_a_search_whose_budget_ended_it_early_says_finished_not_unfinished(clock, stderr):
    progress = Progress(total=4, max_epochs=1, shown=["lr"])
    progress.setup()
    trials = [_trial("a", "RUNNING"), _trial("b", "RUNNING")]
    progress.on_step_begin(0, trials)
    for trial in trials:
        _result(progress, trials, trial, 1, 0.5)
        trial.status = "TERMINATED"
        progress.on_trial_complete(0, trials, trial)
    progress.on_experiment_end(trials)  # the searcher started no more: the device-hours were spent
    last = stderr.lines()[-1]
    assert "finished after 2 of 4 trials; 0 running, 2 completed" in last and "unfinished" not in last


class _Spent:
    """A stopper (as search.strategy.spend.SpendStopper) whose stop_all says whether the budget is spent."""

    def __init__(self, spent: bool) -> None:
        self.spent = spent

    def stop_all(self) -> bool:
        return self.spent


@pytest.mark.parametrize("spent", [True, False], ids=["budget spent", "ctrl-c"])
def test_trials_the_budget_stopped_are_pruned_as_in_the_tables_and_ctrl_cs_unfinished(clock, stderr, spent):
    # Tune marks a running trial TERMINATED, without ending it, both when the stopper stops every trial
    # (the device budget spent) and on Ctrl-C. The tables call the first pruned (it ran fewer than
    # max_epochs and will not run again); the resume reruns the second.
    progress = Progress(total=4, max_epochs=3, shown=["lr"], stopper=_Spent(spent))
    progress.setup()
    trials = [_trial("a", "RUNNING"), _trial("b", "RUNNING")]
    progress.on_step_begin(0, trials)
    for trial in trials:
        _result(progress, trials, trial, 1, 0.5)
        trial.status = "TERMINATED"
    progress.on_experiment_end(trials)
    last = stderr.lines()[-1]
    if spent:
        assert "finished after 2 of 4 trials; 0 running, 0 completed, 2 pruned, 0 error of 4 trials" in last
    else:
        assert "stopped; 0 running, 0 completed, 0 pruned, 0 error, 2 unfinished of 4 trials (2 not started)" in last


def test_a_second_ctrl_c_still_takes_the_frame_down_and_shows_the_cursor(clock, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stderr counts as a terminal
    progress = Progress(total=1, max_epochs=1, shown=[])
    progress.setup()
    live = progress._live
    assert live.is_started  # and on_experiment_end never comes: KeyboardInterrupt left tuner.fit()
    search.progress.stop_frames()
    assert not live.is_started
    search.progress.stop_frames()  # idempotent


def test_a_resumed_search_counts_trials_restored_finished(clock, stderr):
    progress = Progress(total=3, max_epochs=3, shown=["lr"])
    progress.setup()
    trials = [_trial("old", "TERMINATED", 1, 0.5), _trial("older", "TERMINATED", 3, 0.7), _trial("bad", "ERROR", 2, 0.4)]
    progress.on_step_begin(0, trials)
    progress.on_experiment_end(trials)
    assert "finished; 0 running, 1 completed, 1 pruned, 1 error of 3 trials" in stderr.lines()[-1]


def test_a_restored_search_with_nothing_to_run_ends_finished_without_a_step(clock, stderr):
    progress = Progress(total=2, max_epochs=3, shown=["lr"])
    progress.setup()
    progress.on_experiment_end([_trial("old", "TERMINATED", 3, 0.7), _trial("older", "TERMINATED", 1, 0.5)])
    assert "finished; 0 running, 1 completed, 1 pruned, 0 error of 2 trials" in stderr.lines()[-1]


def test_off_a_terminal_plain_lines_at_once_per_trial_and_every_minute(clock, stderr):
    progress = Progress(total=2, max_epochs=2, shown=["lr"], grace=1, eta=2)
    progress.setup()
    assert stderr.lines() == ["[0:00:00] starting 2 trials of up to 2 epochs (ASHA grace 1, eta 2); a line per finished trial and every 60 s"]
    trials = [_trial("a", "RUNNING")]
    progress.on_step_begin(0, trials)
    clock.now += HEARTBEAT - 1
    progress.on_step_end(0, trials)
    assert len(stderr.lines()) == 1
    clock.now += 1
    progress.on_step_end(0, trials)
    heartbeat = stderr.lines()[-1]
    assert heartbeat.startswith("[0:01:00] 1 running, 0 completed") and "a epoch 0/2" in heartbeat
    _result(progress, trials, trials[0], 1, 0.5)
    clock.now += 30
    _result(progress, trials, trials[0], 2, 0.6)
    trials[0].status = "TERMINATED"
    progress.on_trial_complete(0, trials, trials[0])
    line = stderr.lines()[-1]
    assert line.startswith("[0:01:30] trial a completed at epoch 2 of 2 (val_acc 60.00%); 0 running, 1 completed")
    assert "best 60.00% (a)" in line
    progress.on_step_end(0, trials)
    assert len(stderr.lines()) == 3  # the trial's line restarted the minute


def test_one_trial_of_one_epoch_is_said_in_the_singular(clock, stderr):
    progress = Progress(total=1, max_epochs=1, shown=["lr"], grace=1, eta=2)
    progress.setup()
    assert stderr.lines()[0].startswith("[0:00:00] starting 1 trial of up to 1 epoch (ASHA")
    assert "starting 1 trial of up to 1 epoch" in _text(progress.frame())


def test_the_terminal_frame_ticks_between_events(clock, stderr):
    progress = Progress(total=2, max_epochs=2, shown=["lr"])
    progress.setup()
    assert "starting 2 trials of up to 2 epochs" in _text(progress.frame())
    assert "0:00:00 elapsed, ~? left" in _text(progress.frame())
    clock.now += 7
    assert "0:00:07 elapsed" in _text(progress.frame())  # no event in between: the clock still moves


def test_the_live_display_is_made_in_setup_and_never_pickled(clock, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stderr counts as a terminal
    progress = Progress(total=1, max_epochs=1, shown=[])
    pickle.dumps(progress)  # as Tune does into tuner.pkl
    progress.setup()
    assert progress._live is not None and progress._live.is_started
    copy = pickle.loads(pickle.dumps(progress))
    assert copy._live is None and copy.total == 1
    progress.on_experiment_end([])
    assert progress._live is None


def test_the_estimate_is_steady_and_reaches_zero(clock, stderr):
    """16 trials, 2 at a time, 10 s an epoch, ASHA-like lengths: after the first minute every
    estimate is within a quarter of the search's length of the truth, and it ends at 0."""
    runs = [4, 1, 2, 1, 4, 1, 2, 1, 1, 1, 2, 4, 1, 1, 2, 1]
    progress = Progress(total=len(runs), max_epochs=4, shown=["lr"], grace=1, eta=2)
    progress.setup()
    clock.now += 20  # Ray and the first trials starting
    trials, queue, events, estimates = [], list(enumerate(runs)), [], []

    def start() -> None:
        index, epochs = queue.pop(0)
        trials.append(_trial(f"t{index}", "RUNNING"))
        for epoch in range(1, epochs + 1):
            heapq.heappush(events, (clock.now + 10 * epoch, index, epoch, epochs))

    start(), start()
    began = clock.now
    while events:
        clock.now, index, epoch, epochs = heapq.heappop(events)
        trial = next(t for t in trials if t.trial_id == f"t{index}")
        progress.on_step_begin(0, trials)
        _result(progress, trials, trial, epoch, 0.5)
        estimates.append((clock.now, progress.seconds_left()))
        if epoch == epochs:
            trial.status = "TERMINATED"
            progress.on_trial_complete(0, trials, trial)
            if queue:
                start()
    end = clock.now
    for when, estimate in estimates:
        if when - began > 60:
            assert abs(estimate - (end - when)) <= 0.25 * (end - began), (when - began, estimate, end - when)
    assert progress.seconds_left() == 0
