"""The end of a search, and what a finished one reprints when resumed: the top trials, how the
trials ended, each errored trial with the first line of its error, and the exit code.

    0    every trial completed or was pruned
    1    some trial ended in error (after its retries): listed, with where its traceback is
    130  interrupted (Ctrl-C; 143: SIGTERM): the command that resumes it

Reads the report tables only; needs no Ray.
"""

from __future__ import annotations

import re
import shlex

from rich.markup import escape

from model.overrides import interrupted_code
from results.load import load
from results.numbers import counted
from results.schema import is_file, join, locate
from results.status import ERROR, FINISHED, UNFINISHED
from results.show import multi_objective, print_command, print_pareto, top_trials_table, wide_console

FAILED = 1  # some trial ended in error
TOP = 5
ERROR_FILE = "error.txt"  # Tune's: every failure of a trial, each with its traceback
# The line naming an exception in a traceback: "ValueError: ...", "ray.exceptions.RayTaskError(ValueError): ...".
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(\([\w.]*\))?(:\s.*|:?)$")


def finished(location: str, trials: int) -> bool:
    """True when `location`'s report holds all `trials` trials and none is unfinished."""
    try:
        exp = load(location)
    except (OSError, ValueError):  # no report yet, or one being rewritten
        return False
    return len(exp.trials) == trials and not (exp.trials["status"] == UNFINISHED).any()


def first_error_line(traceback: str) -> str:
    """The last failure's exception line ("ValueError: batch_size=64 exceeds ..."); '' when none."""
    for line in reversed(traceback.splitlines()):
        if _EXCEPTION_LINE.match(line) and not line.startswith(("Traceback", "Failure #")):
            return line.strip()
    return ""


def trial_folder(location: str, trial_id: str) -> str:
    """The trial's folder: search.engine names it trial_ID."""
    return join(location, f"trial_{trial_id}")


def print_report(location: str, trials: int, resume_command: str, retries: int) -> int:
    """Print the end of the search whose report is at `location` (as the user gave it); the exit code."""
    exp = load(location)
    console = wide_console()
    console.print(top_trials_table(exp, n=TOP))
    if multi_objective(exp):  # best.json's trial is its first row: the most accurate of the front
        print_pareto(console, exp)
    counts = exp.status_counts()
    done = sum(counts.get(status, 0) for status in FINISHED)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if status in FINISHED) or "none"
    if counts.get(UNFINISHED):  # stopped mid-trial: not among the finished ones
        summary += f"; {counts[UNFINISHED]} more unfinished"
    print_command(console, f"{done} of {counted(trials, 'trial')} finished ({summary}); read the tables with  "
                           f"python -m results.show {shlex.quote(location)}")
    errored = exp.trials.loc[exp.trials["status"] == ERROR, "trial_id"].tolist()
    if errored:
        console.print(_errors_heading(len(errored), trials, retries), highlight=False)
        for trial_id in errored:
            folder = trial_folder(location, trial_id)
            line = f"  {trial_id}: {_error_line(folder)}  (traceback: {join(folder, ERROR_FILE)})"
            console.print(line, markup=False, highlight=False)
    if done < trials:
        console.print(f"[yellow]interrupted[/]: resume with  {escape(resume_command)}", highlight=False, soft_wrap=True)
        return interrupted_code()
    return FAILED if errored else 0


def _errors_heading(errored: int, trials: int, retries: int) -> str:
    tries = f"each after {retries} retries" if retries else "not retried"
    if errored == trials:
        return f"[red]every trial failed[/] ({errored} of {trials}, {tries}): the search found nothing. The errors:"
    return f"[red]{errored} of {trials} trials failed[/] ({tries}); the tables record them as error:"


def _error_line(folder: str) -> str:
    file = join(folder, ERROR_FILE)
    if not is_file(file):
        return "(no error.txt: the error was not recorded)"
    fs, inner = locate(file)
    with fs.open_input_stream(inner) as stream:
        text = stream.readall().decode(errors="replace")
    return first_error_line(text) or "(error.txt names no exception)"
