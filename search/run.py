"""`python -m search.run space=NAME [key=value ...]`: a Ray Tune search, collected into Parquet.

Optuna TPE proposes configs (its study records stopped trials as PRUNED), ASHA stops the weak ones
by validation accuracy; trials report every epoch, checkpoint every checkpoint_every seconds.

    python -m search.run list                   # every space, keys and ranges
    python -m search.run space=augmentation     # runs/augmentation-smoke
    python -m search.run name=NAME resume=true  # go on after Ctrl-C or a crash

The command that started a search, plus resume=true, continues it too: every search key it gives
must then equal the recorded one. A finished search, resumed, prints its report again. Every input
is checked before Ray starts or anything is written; one process at a time works on an experiment
(search.runtime.lock). Exit codes: 0 done, 1 some trial failed, 2 bad input or the experiment is in use,
130 interrupted by Ctrl-C, 143 by SIGTERM (the printed command resumes it).
"""

from __future__ import annotations

from model import overrides

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the slow imports below ends in one line
    overrides.starting()

import sys

from model import data as fmnist
from search.arguments import KEY_HELP, KEYS, parse
from search.runtime.devices import local_resources
from search.settings import MAX_FAILURES, NOTHING_WRITTEN, check_resources


def usage() -> str:
    return overrides.usage(__doc__, {key: KEY_HELP[key] for key in KEYS})


def main(argv: list[str]) -> int:
    if overrides.wants_help(argv):
        print(usage())
        return 0
    if argv == ["list"]:
        from search.describe import print_spaces

        print_spaces()
        return 0
    settings = None
    try:
        if "list" in argv:
            raise ValueError("list takes nothing else: python -m search.run list (every space, its keys and ranges)")
        settings = parse(argv)
        if settings.resume:
            from search.report import finished, print_report

            if finished(settings.location, settings.trials):  # nothing left to run: the report again, no Ray
                return print_report(settings.location, settings.trials, settings.resume_command(), MAX_FAILURES)
        check_resources(settings, local_resources())  # before Ray's 5-20 s start; again once it runs
        split = None if settings.replay else fmnist.load_split(settings.data_dir, settings.val_size, settings.subset)
    except ValueError as e:
        return overrides.reject(e)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the data loads, before Ray
        print(settings.interrupted_line() if settings else NOTHING_WRITTEN)
        return overrides.interrupted_code()
    if not settings.address:  # an embedded Ray; joining a cluster can still fail, with one line
        # The live view starts with Tune, 5-20 s from now: say what happens until then.
        print(f"search {settings.location}: starting Ray and the first trials", file=sys.stderr, flush=True)
    from search.engine import run_search

    return run_search(settings, split)


if __name__ == "__main__":
    overrides.command(main)
