"""`python -m cluster_check [cluster.yaml]`: check an edited cluster config offline, before `ray up`.

First Ray's own validation (what `ray up` checks before it contacts the cloud: the schema with the
provider's defaults merged in), then the project's rules (cluster_check.check) on the config as
written and as Ray completes it. No credentials, no cloud, no cluster.

Exit 0: both pass. Exit 1: the problems, one line each. Exit 2: no such file, or not YAML.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml

from cluster_check import check
from model import overrides

DEFAULT = "cluster.yaml"


def problems(config: dict) -> list[str]:
    """Ray's refusal (if any), then every rule broken as written or as Ray completes the config."""
    from internals import validate_cluster_config  # here: importing Ray takes seconds

    # Ray's autoscaler logs at INFO what defaults it fills in ("setting max workers for head node
    # type to 0"), on every run: not news to the user. Its warnings still show.
    autoscaler = logging.getLogger("ray.autoscaler")
    level = autoscaler.level
    autoscaler.setLevel(logging.WARNING)
    try:
        prepared = validate_cluster_config(config)
    except Exception as error:  # Ray raises jsonschema's, ValueError, KeyError...: all mean "refused"
        return [f"Ray's own validation refuses it: {' '.join(str(error).split())[:500]}"]
    finally:
        autoscaler.setLevel(level)
    found = check(config) + check(prepared)
    return list(dict.fromkeys(found))  # a rule broken both ways is said once


def main(argv: list[str]) -> int:
    usage = f"usage: python -m cluster_check [CLUSTER_YAML] (default {DEFAULT})"
    if any(arg in ("-h", "--help") for arg in argv):
        print(f"{usage}\n\n{overrides.usage(__doc__)}")
        return 0
    if len(argv) > 1 or any(arg.startswith("-") for arg in argv):
        print(usage, file=sys.stderr)
        return 2
    path = Path(argv[0] if argv else DEFAULT)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        print(f"error: {path}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    if not isinstance(config, dict):
        print(f"error: {path} is not a cluster config (a YAML mapping)", file=sys.stderr)
        return 2
    found = problems(config)
    for problem in found:
        print(f"{path}: {problem}")
    if found:
        return 1
    print(f"{path}: passes Ray's offline validation and the project's rules")
    return 0


if __name__ == "__main__":
    overrides.command(main)
