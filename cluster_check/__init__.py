"""The project's rules for a Ray cluster-launcher config (cluster.yaml), on top of Ray's own schema.

    python -m cluster_check cluster.yaml                     # Ray's offline validation, then these rules
    from cluster_check import check
    problems = check(yaml.safe_load(open("cluster.yaml")))   # [] when the config follows them

`check` takes the config as written or as Ray's `prepare_config` returns it (defaults merged in)
and gives one sentence per violation. The rules:

- the dashboard binds to loopback only (`--dashboard-host=127.0.0.1` on the head's `ray start`;
  Ray's AWS defaults use 0.0.0.0);
- no security-group rule opens a Ray port (6379 GCS, 8265 dashboard/Jobs API, 10001 Ray Client),
  and no rule opens anything but tcp/22 to an address range;
- the head runs no trials: its resources say CPU 0 and no GPU;
- the image is rayproject/ray:<installed Ray version>-py<CLUSTER_PYTHON>-gpu (or -cuXYZ);
- every node type states its resources (CPU everywhere, GPU on workers; at least one GPU type);
- setup installs what a trial needs: the project (pip install of the synced checkout) and
  Fashion-MNIST (Debian's dataset-fashion-mnist or a FASHION_MNIST_DIR);
- token authentication: every `ray start` line sets RAY_AUTH_MODE=token with a token
  (RAY_AUTH_TOKEN_PATH to a file that file_mounts copies, or RAY_AUTH_TOKEN), and drivers started
  on the head get the same environment;
- idle workers are removed (idle_timeout_minutes > 0).

Only the standard library is imported here (the Ray version comes from package metadata).
"""

from __future__ import annotations

import re
from typing import Any

# Python of the cluster image: the convention for rayproject/ray:<ray>-py<XY>-gpu tags.
CLUSTER_PYTHON = "3.11"
# Ray ports that must never be reachable from outside the cluster.
RAY_PORTS = {6379: "the GCS", 8265: "the dashboard and Jobs API", 10001: "the Ray Client server"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PROJECT_DIR = "~/fmnist-search"

_IMAGE = re.compile(r"^rayproject/ray:(?P<ray>[0-9][0-9a-z.]*)-py(?P<py>\d)(?P<minor>\d+)(?P<variant>(-[a-z0-9]+)*)$")
_DASHBOARD_HOST = re.compile(r"--dashboard-host(?:=|\s+)[\"']?([^\s\"';]+)")
_NUM_RESOURCE = re.compile(r"--num-(cpus|gpus)(?:=|\s+)[\"']?([0-9.]+)")
_TOKEN_PATH = re.compile(r"RAY_AUTH_TOKEN_PATH=[\"']?([^\s\"';]+)")


def ray_version() -> str:
    """The installed Ray's version, without importing Ray."""
    from importlib.metadata import version

    return version("ray")


def check(config: dict[str, Any], ray_version_: str | None = None, python: str = CLUSTER_PYTHON) -> list[str]:
    """Violations of the project's rules by a cluster-launcher config, one sentence each ([] = fine)."""
    if not isinstance(config, dict):
        return [f"The cluster config is a {type(config).__name__}, not a mapping."]
    problems: list[str] = []
    problems += _dashboard(config)
    problems += _ports(config)
    problems += _resources(config)
    problems += _image(config, ray_version_ or ray_version(), python)
    problems += _setup(config)
    problems += _token(config)
    idle = config.get("idle_timeout_minutes")
    if not isinstance(idle, (int, float)) or isinstance(idle, bool) or idle <= 0:
        problems.append("idle_timeout_minutes must be a positive number, so idle GPU workers are terminated.")
    return problems


# --- helpers -----------------------------------------------------------------------------------


def _commands(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key) or []
    return [str(c) for c in value] if isinstance(value, list) else [str(value)]


def _head_start_lines(config: dict[str, Any]) -> list[str]:
    return [c for c in _commands(config, "head_start_ray_commands") if re.search(r"\bray start\b", c) and "--head" in c]


def _worker_start_lines(config: dict[str, Any]) -> list[str]:
    return [c for c in _commands(config, "worker_start_ray_commands") if re.search(r"\bray start\b", c)]


def _node_types(config: dict[str, Any]) -> dict[str, Any]:
    types = config.get("available_node_types")
    return types if isinstance(types, dict) else {}


def _norm_home(path: str) -> str:
    path = path.strip("\"'")
    for home in ("${HOME}", "$HOME", "/home/ray", "/root"):
        if path == home or path.startswith(home + "/"):
            return "~" + path[len(home):]
    return path


# --- the rules ---------------------------------------------------------------------------------


def _dashboard(config: dict[str, Any]) -> list[str]:
    if "head_start_ray_commands" not in config:
        return ["head_start_ray_commands is not set, and Ray's AWS default starts the dashboard on 0.0.0.0: "
                "override it with --dashboard-host=127.0.0.1."]
    lines = _head_start_lines(config)
    if not lines:
        return ["head_start_ray_commands has no `ray start --head` line."]
    problems = []
    for line in lines:
        hosts = _DASHBOARD_HOST.findall(line)
        if not hosts:
            problems.append("The head's `ray start --head` does not say --dashboard-host=127.0.0.1: "
                            "state the loopback binding explicitly.")
        for host in hosts:
            if host not in LOOPBACK:
                problems.append(f"The dashboard binds to {host}; it must bind to 127.0.0.1 only "
                                "(reach it with `ray dashboard cluster.yaml`).")
    return problems


def _port_range(rule: dict[str, Any]) -> tuple[int, int] | None:
    """(from, to) of an ingress rule; None = every port."""
    proto = str(rule.get("IpProtocol", "")).lower()
    if proto in ("-1", "all"):
        return None
    lo, hi = rule.get("FromPort"), rule.get("ToPort")
    if lo is None or hi is None or int(lo) == -1:
        return None
    return int(lo), int(hi)


def _ports(config: dict[str, Any]) -> list[str]:
    problems = []
    provider = config.get("provider") or {}
    rules = (provider.get("security_group") or {}).get("IpPermissions") or []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            problems.append(f"provider.security_group.IpPermissions[{i}] is not a mapping.")
            continue
        span = _port_range(rule)
        where = f"provider.security_group.IpPermissions[{i}]"
        shown = "every port" if span is None else (f"port {span[0]}" if span[0] == span[1] else f"ports {span[0]}-{span[1]}")
        for port, what in RAY_PORTS.items():
            if span == (port, port):
                problems.append(f"{where} opens port {port} ({what}): Ray ports must not be reachable from outside the cluster.")
            elif span is None or span[0] <= port <= span[1]:
                problems.append(f"{where} opens {shown}, which include {port} ({what}): Ray ports must not be reachable from outside the cluster.")
        public = rule.get("IpRanges") or rule.get("Ipv6Ranges") or rule.get("PrefixListIds")
        proto = str(rule.get("IpProtocol", "")).lower()
        if public and not (span == (22, 22) and proto in ("tcp", "6")):
            problems.append(f"{where} opens {shown} ({proto or 'no protocol'}) to an address range; only tcp/22 (SSH) may be public.")
    for name, node_type in _node_types(config).items():
        if isinstance(node_type, dict) and "SecurityGroupIds" in (node_type.get("node_config") or {}):
            problems.append(f"Node type {name} uses its own SecurityGroupIds, whose rules this check cannot see: "
                            "let Ray create the group (only intra-cluster traffic and SSH) or drop SecurityGroupIds.")
    return problems


def _resources(config: dict[str, Any]) -> list[str]:
    problems = []
    types = _node_types(config)
    head = config.get("head_node_type")
    if not types:
        return ["available_node_types is missing: every node type must state its resources."]
    if head not in types:
        problems.append(f"head_node_type {head!r} is not one of available_node_types.")
    any_gpu = False
    for name, node_type in types.items():
        res = node_type.get("resources") if isinstance(node_type, dict) else None
        if not isinstance(res, dict) or "CPU" not in res:
            problems.append(f"Node type {name} does not state its resources with a CPU count "
                            "(the launcher would have to ask the cloud, and offline validation cannot).")
            continue
        if name == head:
            if res.get("CPU") != 0:
                problems.append(f"The head node type {name} offers {res.get('CPU')} CPUs; it must offer CPU 0 so that no trial runs on the head.")
            if res.get("GPU", 0) != 0:
                problems.append(f"The head node type {name} offers GPUs ({res.get('GPU')}); the head must run no trials.")
        else:
            if "GPU" not in res:
                problems.append(f"Worker node type {name} does not state its GPU count.")
            elif res["GPU"] > 0:
                any_gpu = True
            lo, hi = node_type.get("min_workers", 0), node_type.get("max_workers")
            if hi is not None and lo > hi:
                problems.append(f"Worker node type {name} has min_workers {lo} above max_workers {hi}.")
    if types and not any_gpu:
        problems.append("No worker node type offers a GPU; the search's trials request GPUs.")
    for line in _head_start_lines(config):
        for kind, value in _NUM_RESOURCE.findall(line):
            if float(value) > 0:
                problems.append(f"The head's `ray start` says --num-{kind}={value}; the head must run no trials.")
    return problems


def _image(config: dict[str, Any], ray_ver: str, python: str) -> list[str]:
    docker = config.get("docker") or {}
    images = {k: docker[k] for k in ("image", "head_image", "worker_image") if docker.get(k)}
    if not images:
        return ["docker.image is not set: nodes must run the rayproject/ray image that matches the installed Ray."]
    problems = []
    for key, image in images.items():
        image = str(image)
        if image.startswith("rayproject/ray-ml"):
            problems.append(f"docker.{key} is {image}: rayproject/ray-ml images are discontinued; use rayproject/ray:{ray_ver}-py{python.replace('.', '')}-gpu.")
            continue
        match = _IMAGE.match(image)
        if not match:
            problems.append(f"docker.{key} is {image}; expected rayproject/ray:{ray_ver}-py{python.replace('.', '')}-gpu (a pinned version tag).")
            continue
        if match["ray"] != ray_ver:
            problems.append(f"docker.{key} is {image}, Ray {match['ray']}, but the project uses Ray {ray_ver}: the versions must match.")
        image_py = f"{match['py']}.{match['minor']}"
        if image_py != python:
            problems.append(f"docker.{key} is {image}, Python {image_py}, but the cluster image convention is Python {python}.")
        gpu = any(v == "gpu" or v.startswith("cu") for v in match["variant"].split("-") if v)
        if key != "head_image" and not gpu:
            problems.append(f"docker.{key} is {image}, not a GPU image (-gpu or -cuXYZ), but workers run on GPUs.")
    return problems


def _installs_project(commands: list[str], mounts: dict[str, Any]) -> bool:
    targets = {_norm_home(str(t)).rstrip("/") for t in mounts}
    for command in commands:
        for m in re.finditer(r"pip3?\s+install\b([^;&|]*)", command):
            args = [_norm_home(a).rstrip("/") for a in m.group(1).split()]
            if any(a in targets or a == PROJECT_DIR for a in args) and PROJECT_DIR in targets:
                return True
    return False


def _installs_data(commands: list[str]) -> bool:
    return any("dataset-fashion-mnist" in c or "FASHION_MNIST_DIR" in c for c in commands)


def _setup(config: dict[str, Any]) -> list[str]:
    mounts = config.get("file_mounts") or {}
    common = _commands(config, "setup_commands")
    per_node = {
        "head": common + _commands(config, "head_setup_commands"),
        "worker": common + _commands(config, "worker_setup_commands"),
    }
    problems = []
    if PROJECT_DIR not in {_norm_home(str(t)).rstrip("/") for t in mounts}:
        problems.append(f"file_mounts does not sync the repository to {PROJECT_DIR}.")
    for role, commands in per_node.items():
        if not _installs_project(commands, mounts):
            problems.append(f"The {role} setup commands do not pip install the project from {PROJECT_DIR}.")
        if not _installs_data(commands):
            problems.append(f"The {role} setup commands do not install Fashion-MNIST (dataset-fashion-mnist or FASHION_MNIST_DIR).")
    for name, node_type in _node_types(config).items():
        own = node_type.get("worker_setup_commands") if isinstance(node_type, dict) else None
        if own is not None:  # replaces setup_commands + worker_setup_commands for that type
            own = [str(c) for c in own]
            if not _installs_project(own, mounts) or not _installs_data(own):
                problems.append(f"Node type {name} overrides worker_setup_commands without installing the project and Fashion-MNIST.")
    return problems


def _token(config: dict[str, Any]) -> list[str]:
    problems = []
    mounts = {_norm_home(str(t)) for t in (config.get("file_mounts") or {})}
    for role, lines in (("head", _head_start_lines(config)), ("worker", _worker_start_lines(config))):
        if not lines:
            problems.append(f"No {role} `ray start` line: token authentication cannot be checked.")
        for line in lines:
            before = line[: re.search(r"\bray start\b", line).start()]
            if not re.search(r"RAY_AUTH_MODE=[\"']?token\b", before):
                problems.append(f"The {role} `ray start` line does not set RAY_AUTH_MODE=token before starting Ray.")
                continue
            path = _TOKEN_PATH.search(before)
            if path:
                if _norm_home(path.group(1)) not in mounts:
                    problems.append(f"The {role} token file {path.group(1)} is not copied by file_mounts.")
            elif "RAY_AUTH_TOKEN=" not in before:
                problems.append(f"The {role} `ray start` line sets no token (RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN).")
    head_setup = _commands(config, "setup_commands") + _commands(config, "head_setup_commands")
    if not any("RAY_AUTH_MODE=token" in c and "bashrc" in c for c in head_setup):
        problems.append("No setup command exports RAY_AUTH_MODE=token (and the token) in ~/.bashrc, "
                        "so drivers started with `ray exec` could not join the cluster.")
    return problems
