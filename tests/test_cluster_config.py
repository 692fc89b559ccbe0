"""cluster.yaml, offline and without credentials: Ray's own validation, then the project's rules.

Ray's check is what `ray up` runs before it talks to AWS (prepare_config merges the AWS defaults,
validate_config applies the schema and cross-field rules). The project's rules live in
cluster_check (a user command: `python -m cluster_check cluster.yaml`); the broken variants below
show that they catch what Ray's schema lets through (a dashboard on 0.0.0.0, an open 8265, a head
that runs trials, a stale image, ...).
The autoscaling rehearsal's config gets the same Ray validation, and the rehearsal itself runs once
(slow: a local fake-multi-node cluster, about a minute).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from cluster_check import CLUSTER_PYTHON, check, ray_version
from internals import FAKE_MULTINODE_PROVIDER, validate_cluster_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
REHEARSAL_YAML = ROOT / "scripts" / "autoscale_rehearsal.yaml"
REHEARSAL_SH = ROOT / "scripts" / "autoscale_rehearsal.sh"


@pytest.fixture(autouse=True)
def _pinned_auth_mode(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def load(path: Path = CLUSTER_YAML) -> dict:
    return yaml.safe_load(path.read_text())


def ray_prepared(config: dict) -> dict:
    """What `ray up` checks before it needs the cloud; raises on an invalid config."""
    return validate_cluster_config(config)


def head_start(config: dict) -> str:
    return next(c for c in config["head_start_ray_commands"] if "ray start" in c and "--head" in c)


def worker_types(config: dict) -> dict:
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


# --- the real file ------------------------------------------------------------------------------


def test_cluster_yaml_passes_rays_own_validation():
    prepared = ray_prepared(load())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_yaml_follows_the_project_rules_as_written_and_as_prepared():
    config = load()
    assert check(config) == []
    assert check(ray_prepared(config)) == []


def test_cluster_rules_import_nothing_heavy():
    code = "import sys, cluster_check as m; print(sorted({'ray', 'torch', 'numpy', 'yaml'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_user_command_passes_the_real_file():
    done = subprocess.run([sys.executable, "-m", "cluster_check", str(CLUSTER_YAML)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{CLUSTER_YAML}: passes Ray's offline validation and the project's rules\n"
    assert done.stderr == ""  # none of Ray's INFO lines (its autoscaler filling in defaults)


def test_the_user_command_names_what_breaks_an_edited_file(tmp_path, capsys):
    from cluster_check.__main__ import main

    config = load()
    _set_head_start(config, "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
    _open(8265)(config)
    edited = tmp_path / "cluster.yaml"
    edited.write_text(yaml.safe_dump(config))
    assert main([str(edited)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith(f"{edited}: ") for line in lines), lines
    assert "binds to 0.0.0.0" in lines[0] and "opens port 8265 (the dashboard" in lines[1]
    assert len(lines) == len(set(lines)) == 3  # the third: 8265 is not SSH; none said twice
    _first_worker(lambda t: t.pop("resources"))(config)  # Ray's own validation refuses this (AWS would be asked)
    edited.write_text(yaml.safe_dump(config))
    assert main([str(edited)]) == 1
    assert "Ray's own validation refuses it" in capsys.readouterr().out
    (tmp_path / "list.yaml").write_text("- a list\n")
    for bad in (tmp_path / "missing.yaml", tmp_path / "list.yaml"):
        assert main([str(bad)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1


def test_dashboard_is_bound_to_loopback_and_reached_over_ssh():
    line = head_start(load())
    assert re.search(r"--dashboard-host=127\.0\.0\.1\b", line)
    assert "0.0.0.0" not in line


def test_no_security_group_rule_opens_a_ray_port():
    config = load()
    assert config["provider"]["security_group"]["IpPermissions"] == []  # nothing on top of Ray's own group
    for node_type in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node_type["node_config"]  # Ray's group: intra-cluster + SSH only
    for port in (6379, 8265, 10001):  # GCS, dashboard and Jobs API, Ray Client: each one is caught
        opened = load()
        _open(port)(opened)
        assert any(f"opens port {port}" in problem for problem in check(opened)), port


def test_head_runs_no_trials():
    config = load()
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert head["resources"].get("GPU", 0) == 0
    assert not re.search(r"--num-(cpus|gpus)=[1-9]", head_start(config))


def test_image_matches_installed_ray_and_the_python_convention():
    import ray

    assert ray_version() == ray.__version__
    py = CLUSTER_PYTHON.replace(".", "")
    assert load()["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py{py}-gpu"
    # the cluster's Python must be one the project supports
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.fullmatch(r">=\s*(\d+)\.(\d+)", requires).groups())
    assert tuple(int(x) for x in CLUSTER_PYTHON.split(".")) >= minimum
    # and the project pins the Ray the image carries
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"ray[tune]=={ray.__version__}" in deps


def test_gpu_worker_types_one_and_four_gpus_with_stated_resources():
    config = load()
    workers = worker_types(config)
    gpus = sorted(t["resources"]["GPU"] for t in workers.values())
    assert 1 in gpus and 4 in gpus
    for name, node_type in config["available_node_types"].items():
        assert "CPU" in node_type["resources"], name
    for name, node_type in workers.items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name
        assert node_type["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name
    assert config["idle_timeout_minutes"] > 0


def test_setup_installs_the_project_and_fashion_mnist():
    config = load()
    assert config["file_mounts"]["~/fmnist-search"] == "."
    setup = " ; ".join(config["setup_commands"])
    assert "pip install -q -e ~/fmnist-search" in setup
    assert "dataset-fashion-mnist" in setup
    assert "model.data import find" in setup  # a node whose data is missing fails its setup
    assert any(".venv" in pattern for pattern in config["rsync_exclude"])  # GBs we must not upload


def test_token_authentication_is_on_for_every_ray_start_and_for_drivers():
    config = load()
    token = "~/.ray/fmnist-search.token"
    assert token in config["file_mounts"]
    for line in [head_start(config), *[c for c in config["worker_start_ray_commands"] if "ray start" in c]]:
        before = line[: line.index("ray start")]
        assert "RAY_AUTH_MODE=token" in before
        assert "RAY_AUTH_TOKEN_PATH=$HOME/.ray/fmnist-search.token" in before
    assert any("RAY_AUTH_MODE=token" in c and "~/.bashrc" in c for c in config["setup_commands"])


# --- broken variants: each must be rejected by the project's rules --------------------------------


def _set_head_start(config: dict, old: str, new: str) -> None:
    config["head_start_ray_commands"] = [c.replace(old, new) for c in config["head_start_ray_commands"]]


def _open(port_from: int, port_to: int | None = None, protocol: str = "tcp"):
    def mutate(config: dict) -> None:
        config["provider"]["security_group"]["IpPermissions"].append(
            {"IpProtocol": protocol, "FromPort": port_from, "ToPort": port_to or port_from,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    return mutate


def _head_resources(resources: dict):
    def mutate(config: dict) -> None:
        config["available_node_types"][config["head_node_type"]]["resources"] = resources
    return mutate


def _image(image: str):
    def mutate(config: dict) -> None:
        config["docker"]["image"] = image
    return mutate


def _drop_setup(word: str):
    def mutate(config: dict) -> None:
        config["setup_commands"] = [c for c in config["setup_commands"] if word not in c]
    return mutate


def _worker_start(old: str, new: str):
    def mutate(config: dict) -> None:
        config["worker_start_ray_commands"] = [c.replace(old, new) for c in config["worker_start_ray_commands"]]
    return mutate


def _first_worker(mutate_type):
    def mutate(config: dict) -> None:
        mutate_type(next(iter(worker_types(config).values())))
    return mutate


BROKEN = {
    "dashboard on 0.0.0.0": (lambda c: _set_head_start(c, "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"),
                             "binds to 0.0.0.0"),
    "dashboard host left to chance": (lambda c: _set_head_start(c, " --dashboard-host=127.0.0.1", ""),
                                      "does not say --dashboard-host"),
    "Ray's default start commands": (lambda c: c.pop("head_start_ray_commands"), "0.0.0.0"),
    "port 8265 open": (_open(8265), "opens port 8265"),
    "port 6379 open": (_open(6379), "opens port 6379"),
    "port 10001 open": (_open(10001), "opens port 10001"),
    "a range over 6379": (_open(6000, 7000), "include 6379"),
    "all traffic open": (_open(-1, -1, "-1"), "every port"),
    "https open to the world": (_open(443), "only tcp/22"),
    "own security groups": (_first_worker(lambda t: t["node_config"].update(SecurityGroupIds=["sg-0123"])),
                            "SecurityGroupIds"),
    "head with CPUs": (_head_resources({"CPU": 4}), "must offer CPU 0"),
    "head with a GPU": (_head_resources({"CPU": 0, "GPU": 1}), "GPUs"),
    "head started with CPUs": (lambda c: _set_head_start(c, "--head", "--head --num-cpus=4"), "--num-cpus=4"),
    "head resources unstated": (_head_resources({}), "does not state its resources"),
    "stale Ray image": (_image("rayproject/ray:2.9.0-py311-gpu"), "versions must match"),
    "other Python": (_image("rayproject/ray:{ray}-py310-gpu"), "Python 3.10"),
    "CPU image for GPU workers": (_image("rayproject/ray:{ray}-py311-cpu"), "not a GPU image"),
    "discontinued ray-ml": (_image("rayproject/ray-ml:{ray}-py311-gpu"), "discontinued"),
    "unpinned latest": (_image("rayproject/ray:latest-gpu"), "pinned version"),
    "worker resources missing": (_first_worker(lambda t: t.pop("resources")), "does not state its resources"),
    "worker GPU count missing": (_first_worker(lambda t: t["resources"].pop("GPU")), "GPU count"),
    "no GPU worker at all": (lambda c: [t["resources"].update(GPU=0) for t in worker_types(c).values()],
                             "No worker node type offers a GPU"),
    "project not installed": (_drop_setup("pip install"), "pip install the project"),
    "data not installed": (_drop_setup("dataset-fashion-mnist"), "Fashion-MNIST"),
    "repository not synced": (lambda c: c["file_mounts"].pop("~/fmnist-search"), "does not sync the repository"),
    "worker without token auth": (_worker_start("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
                                  "worker `ray start` line does not set RAY_AUTH_MODE=token"),
    "token file not shipped": (lambda c: c["file_mounts"].pop("~/.ray/fmnist-search.token"), "not copied by file_mounts"),
    "drivers without the token": (_drop_setup("bashrc"), "~/.bashrc"),
    "no idle timeout": (lambda c: c.update(idle_timeout_minutes=0), "idle_timeout_minutes"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_variant_is_rejected(name):
    import ray

    mutate, expected = BROKEN[name]
    config = load()
    mutate(config)
    config["docker"]["image"] = config["docker"]["image"].replace("{ray}", ray.__version__)
    problems = check(config)
    assert any(expected in p for p in problems), problems
    assert all(p.endswith(".") for p in problems)  # sentences
    if name == "Ray's default start commands":  # what Ray would fill in really binds 0.0.0.0
        assert any("binds to 0.0.0.0" in p for p in check(ray_prepared(config)))


def test_rays_schema_alone_lets_the_dangerous_variants_through():
    """Why the project rules exist: Ray validates these happily."""
    for name in ("dashboard on 0.0.0.0", "port 8265 open", "head with CPUs", "stale Ray image", "worker without token auth"):
        config = load()
        BROKEN[name][0](config)
        ray_prepared(config)  # no exception
        assert check(config), name


def test_ray_itself_rejects_a_node_type_without_resources():
    config = load()
    _first_worker(lambda t: t.pop("resources"))(config)
    with pytest.raises(Exception, match="resources"):
        ray_prepared(config)


def test_check_copes_with_garbage():
    assert check([]) and check({}) and check({"available_node_types": {"x": None}, "head_node_type": "x"})


# --- the local autoscaling rehearsal ----------------------------------------------------------------


def test_rehearsal_config_validates_and_mirrors_the_cluster():
    config = load(REHEARSAL_YAML)
    ray_prepared(config)
    assert config["provider"] == {**config["provider"], "type": "external", "module": FAKE_MULTINODE_PROVIDER}
    assert config["provider"]["disable_node_updaters"] is True
    assert config["head_node_type"] == "ray.head.default"  # the fake provider's fixed name
    assert config["available_node_types"]["ray.head.default"]["resources"]["CPU"] == 0
    gpus = sorted(t["resources"]["GPU"] for t in worker_types(config).values())
    assert gpus == [1, 4]
    module, cls = FAKE_MULTINODE_PROVIDER.rsplit(".", 1)
    assert hasattr(__import__(module, fromlist=[cls]), cls)


def test_rehearsal_script_is_valid_bash():
    assert os.access(REHEARSAL_SH, os.X_OK)
    subprocess.run(["bash", "-n", str(REHEARSAL_SH)], check=True)


@pytest.mark.slow
def test_rehearsal_adds_gpu_nodes_and_cleans_up():
    """The probe workload (no training): GPU nodes appear for {"GPU": 0.5} actors; nothing is left."""
    env = {**os.environ, "PYTHON": sys.executable, "REHEARSAL_WORKLOAD": "probe", "REHEARSAL_SCALEDOWN": "0"}
    out = subprocess.run([str(REHEARSAL_SH)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert re.search(r"OK: \d+ GPU node\(s\) were added by the autoscaler", log), log[-3000:]
    assert re.search(r"^\s*\d+ gpu\.(1x|4x)\.fake$", log, re.M), log[-3000:]
    assert "no process of the rehearsal cluster is left" in log
