"""The retrain's command: `python -m search.retrain runs/NAME [key=value ...]` (see search.retrain)."""

from __future__ import annotations

from model import overrides

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the slow imports below ends in one line
    overrides.starting()

import sys

import numpy as np

from model.config import Config
from results.numbers import counted, number
from results.schema import WINNER_FOLDER, join
from results.show import matches_report, not_comparable_text, report_accuracies
from search.retrain.plan import parse_args, usage
from search.retrain.seeds import BadResources, load_data, resources, train_seeds
from search.retrain.winner import write_and_publish
from search.runtime.devices import local_resources


def main(argv: list[str]) -> int:
    if overrides.wants_help(argv):
        print(usage())
        return 0
    try:
        plan = parse_args(argv)
        if not plan.address:  # this machine's CPUs and GPUs, before Ray's start; Ray's count again once it runs
            resources(plan, local_resources())
        split, test = load_data(plan)
    except ValueError as e:
        return overrides.reject(e)

    import ray

    from search.report import first_error_line
    from search.runtime.lock import Lock, LockError
    from search.runtime.ray_session import RayUnavailable, ray_session

    overrides.say(f"retrain of {plan.run}: {plan.source}")
    overrides.say(f"config (differences from the defaults): {_describe(plan.cfg)}")
    lock: Lock | None = None
    try:
        with ray_session(plan.address):
            lock = Lock(plan.run, "search.retrain")
            lock.acquire()
            if lock.note:
                print(lock.note, file=sys.stderr)
            outs = train_seeds(plan, split, test)
        check, files = write_and_publish(plan, outs, test)
    except (BadResources, RayUnavailable, LockError) as e:
        return overrides.reject(e)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (model.overrides.command)
        print("interrupted: winner/ left as it was", file=sys.stderr)
        return overrides.interrupted_code()
    except ray.exceptions.RayError as e:  # a seed failed in training, or lost its worker more than MAX_RETRIES times
        print(f"error: a seed failed: {first_error_line(str(e)) or type(e).__name__}; winner/ left as it was", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()

    acc = np.array([o["test_acc"] for o in outs]) * 100
    spread = f" ± {acc.std(ddof=1):.2f}% (mean ± sd)" if len(acc) > 1 else " (one seed: no sd)"
    report = report_accuracies() if matches_report(outs[0]["train_images"], {plan.cfg.epochs}) else not_comparable_text()
    overrides.say(f"test accuracy over {counted(len(acc), 'seed')}: {acc.mean():.2f}%{spread}; {report}")
    overrides.say(
        f"ONNX Runtime vs PyTorch, seed {outs[0]['seed']} on {check['images']:,} test images: argmax agreement "
        f"{check['agree']:,}/{check['images']:,}, max |logit diff| {check['max_abs_diff']:.2e}"
    )
    overrides.say(f"written to {join(plan.run, WINNER_FOLDER)}/: {', '.join(files)}")
    return 0


def _describe(cfg: Config) -> str:
    defaults = Config().to_flat()
    changed = [f"{k}={number(v)}" for k, v in cfg.to_flat().items() if defaults[k] != v and k != "seed"]
    return " ".join(changed) or "(the seed preset's values)"


if __name__ == "__main__":
    overrides.command(main)
