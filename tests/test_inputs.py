"""Bad values anywhere are refused with one line: the Config itself, model.train's command line
(exit 2, nothing trained); --help and -h print usage for every command; a trial's device follows
Ray's GPU assignment only; one validation split for a given val_size, whatever the command."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from model import data as fmnist
from model import overrides
from model.config import Config
from search import run
from search.retrain import __main__ as retrain
from search.runtime import devices

import model.train as train


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"rotation": float("inf")}, "rotation=inf: must be a finite number"),
        ({"lr": float("nan")}, "lr=nan: must be a finite number"),
        ({"seed": 2**32}, "seed=4294967296: must lie between 0 and 4,294,967,295"),
        ({"seed": -1}, "seed=-1: must lie between 0"),
        ({"epochs": 0}, "epochs=0: must lie between 1 and"),
        ({"batch_size": 10**9}, "batch_size=1000000000: must lie between 1 and 60,000"),
        ({"filters": (64, 10**6)}, "filters=(64, 1000000): give one channel count in 1..4096"),
        ({"rotation": 181.0}, "rotation=181.0: must be at most 180"),
        ({"shear": 90.0}, "shear=90.0: must be below 90"),
        ({"momentum": 1.0}, "momentum=1.0: must be below 1"),
        ({"optimizer": "sgd", "momentum": 0.0}, "optimizer=sgd with momentum=0"),
        ({"bn_bias_lr": 0.0}, "bn_bias_lr=0.0: must lie in (0, 1024]"),
    ],
)
def test_config_refuses_non_finite_and_out_of_range_values(fields, message):
    with pytest.raises(ValueError) as info:
        Config(**fields)
    assert message in str(info.value)


@pytest.mark.parametrize("key", ["epochs", "batch_size", "seed", "filters"])
@pytest.mark.parametrize("text", ["inf", "nan", "1e400"])
def test_config_text_that_is_no_integer_is_refused(key, text):
    with pytest.raises(ValueError, match=f"{key}='{text}': expected"):
        Config.from_flat({key: text})


@pytest.mark.parametrize("text", ["64,,128", "64,", ",64"])
def test_a_channel_list_with_an_empty_item_is_a_typo_refused(text):
    with pytest.raises(ValueError, match=f"filters='{text}': expected comma-separated integers"):
        Config.from_flat({"filters": text})
    assert Config.from_flat({"filters": " 32, 64 "}).filters == (32, 64)


BAD_TRAIN = [
    (["epochs=inf"], "epochs='inf': expected an integer"),
    (["batch_size=inf"], "batch_size='inf': expected an integer"),
    (["seed=inf"], "seed='inf': expected an integer"),
    (["residual=on"], "residual='on': expected true or false"),  # what is accepted, not Python's type name
    (["lr=-1"], "lr=-1: the learning rate must be positive"),  # not ">= 0", which lr=0 would then fail
    (["lr=0"], "lr=0: the learning rate must be positive"),
    (["subset=all", "val_size=59999"], "(subset=all, val_size=59999)"),
    (["subset=1e3", "batch_size=2000"], "batch_size=2000 exceeds the 1,000 training images (subset=1000, val_size=6000)"),
    (["seed=99999999999999999999"], "seed=99999999999999999999: must lie between 0 and"),
    (["rotation=inf"], "rotation=inf: must be a finite number"),
    (["lr=nan"], "lr=nan: must be a finite number"),
    (["subset=10"], "batch_size=64 exceeds the 10 training images"),
    (["val_size=60000"], "val_size=60000: must lie between 1 and 59,999"),
    (["val_size=59999"], "(subset=all, val_size=59999)"),  # as typed, not Python's None
    (["subset=59000"], "subset=59000 with val_size=6000: the 60,000 training images less 6,000 for validation leave 54,000"),
    (["device=tpu"], "device='tpu': choose cpu or cuda"),
    (["cuda_graph=maybe"], "cuda_graph='maybe': choose auto, on or off"),
    (["cuda_graph=on", "device=cpu"], "cuda_graph=on captures a CUDA graph: it needs a CUDA GPU"),
    (["data_dir="], "data_dir= is empty"),
    (["preset=nope"], "unknown preset 'nope'"),
]


@pytest.mark.parametrize("args, message", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_model_train_refuses_bad_values_with_one_line(capsys, args, message):
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_model_train_refuses_cuda_without_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert train.main(["device=cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device=cuda: PyTorch sees no CUDA GPU" in err


COMMANDS = ["model.train", "search.run", "search.retrain.__main__", "search.replay.record", "results.show", "results.collect",
            "cluster_check.__main__"]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_prints_usage_for_help(capsys, name, flag):
    command = importlib.import_module(name)
    assert command.main([flag, "anything=else"]) == 0
    out, err = capsys.readouterr()
    first = out.splitlines()[0]
    assert f"python -m {name.removesuffix('.__main__')} " in first and err == "", out + err
    assert [line for line in out.splitlines() if len(line) > overrides.HELP_WIDTH] == []  # a terminal's width
    if command in (train, run, retrain):
        assert "Keys:" in out


def test_a_trials_device_follows_rays_gpu_assignment_only():
    # No GPU assigned: the CPU, even where GPUs are visible (Ray 2.60 no longer hides them).
    assert devices.device_for([], "0,1", cuda_available=True) == "cpu"
    # Ray sets CUDA_VISIBLE_DEVICES to the assigned ids: the first is index 0 there.
    assert devices.device_for([2], "2", cuda_available=True) == "cuda:0"
    assert devices.device_for(["3"], "1,3", cuda_available=True) == "cuda:1"
    assert devices.device_for([1], None, cuda_available=True) == "cuda:1"  # the variable left unset
    assert devices.device_for([0], "0", cuda_available=False) == "cpu"  # logical GPUs of a simulated node


def test_assigned_device_asks_ray_not_torch(monkeypatch):
    import ray
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU node, as the worker sees it
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert devices.assigned_device() == "cpu"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [5])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert devices.assigned_device() == "cuda:0"


def test_trials_sharing_a_gpu_without_mps_get_one_line_with_the_command_that_starts_it(tmp_path):
    without, with_mps = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}, {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "mps")}
    (tmp_path / "mps").mkdir()
    (tmp_path / "mps" / "control").touch()  # the daemon's control pipe
    note = devices.mps_note(0.25, 1, without)
    assert note is not None and "\n" not in note and note.endswith(f"start MPS with  {devices.MPS_START}")
    assert devices.mps_note(0.25, 1, with_mps) is None  # MPS runs
    assert devices.mps_note(1, 1, without) is None and devices.mps_note(0, 0, without) is None  # nothing shared
    assert devices.mps_note(0.25, 0, without) is None  # no GPU here (a cluster's head)


@pytest.mark.parametrize(("visible", "gpus"), [("0,1", 2), ("", 0), ("-1", 0), ("2", 1), ("0,-1,1", 1)])
def test_local_gpus_follow_cuda_visible_devices(visible, gpus):
    assert devices.local_gpus({"CUDA_VISIBLE_DEVICES": visible}) == gpus


def test_a_gpu_budget_grows_with_the_gpus_of_the_machine():
    from search.strategy import budgets

    one, four = budgets.get("standard").values(1), budgets.get("standard").values(4)
    assert (four["trials"], four["concurrency"], four["gpu_hours"]) == (4 * one["trials"], 4 * one["concurrency"],
                                                                       pytest.approx(4 * one["gpu_hours"]))
    assert four["max_epochs"] == one["max_epochs"] and four["gpus_per_trial"] == one["gpus_per_trial"]
    assert budgets.get("smoke").values(4) == budgets.get("smoke").values(0)  # a CPU budget stays as it is


def test_a_local_search_s_gpu_budget_is_each_gpu_s_and_given_keys_stay_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    standard = run.parse(["space=full", "budget=standard", f"storage={tmp_path}"])
    given = run.parse(["space=full", "budget=standard", "trials=10", f"storage={tmp_path}"])
    joined = run.parse(["space=full", "budget=standard", "address=auto", "shared=true", f"storage={tmp_path}"])
    assert (standard.trials, standard.concurrency) == (2 * joined.trials, 2 * joined.concurrency)
    assert given.trials == 10 and given.concurrency == standard.concurrency


def test_one_validation_split_for_a_val_size_whatever_the_command(fmnist_dir):
    argv = [f"data_dir={fmnist_dir}", "val_size=300", "subset=600"]
    _, _, seven = train.prepare([*argv, "seed=7"])  # the weights' seed does not pick the validation images
    _, _, zero = train.prepare([*argv, "seed=0"])
    searched = fmnist.load_split(str(fmnist_dir), 300, 600)  # what search.run trains its trials on
    whole = fmnist.load_split(str(fmnist_dir), 300, None)
    for split in (zero, searched, whole):
        assert np.array_equal(split.val_images, seven.val_images) and np.array_equal(split.val_labels, seven.val_labels)
    assert np.array_equal(zero.train_images, searched.train_images)


@pytest.mark.parametrize("args", [["search.run", "--help"], ["search.run", "list"], ["model.train", "--help"]])
def test_a_reader_that_stops_reading_is_no_error(reader_gone, args):
    done = reader_gone(*args)  # `| head -1`
    assert (done.returncode, done.stderr) == (0, "")


def test_a_reader_that_stops_reading_leaves_the_exit_code_alone(reader_gone):
    done = reader_gone("search.run", "space=nope")
    assert done.returncode == 2 and done.stderr.startswith("error: unknown space 'nope'")


UNREACHABLE = "hdfs://nohost/runs/x"  # pyarrow cannot reach it here: no Java, so an OSError at once, no network


@pytest.mark.parametrize("command, args, named", [
    ("results.show", [UNREACHABLE], UNREACHABLE),
    ("results.collect", [UNREACHABLE], UNREACHABLE),
    ("search.run", ["space=seed", f"warm_start={UNREACHABLE}"], f"warm_start={UNREACHABLE}"),
    ("search.run", ["space=seed", f"replay={UNREACHABLE}"], f"replay={UNREACHABLE}"),
    ("search.run", ["space=seed", f"storage={UNREACHABLE}"], f"storage={UNREACHABLE}"),
], ids=["show", "collect", "warm_start", "replay", "storage"])
def test_a_uri_that_cannot_be_reached_is_one_line_wherever_it_is_given(capsys, tmp_path, monkeypatch, command, args, named):
    monkeypatch.chdir(tmp_path)
    assert importlib.import_module(command).main(args) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {named}: ") and "cannot be reached (" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("No", False), ("1", True), ("false", False), ("TRUE", True)])
def test_a_config_switch_takes_the_words_every_command_takes(text, value):
    # model.train and search.retrain refused residual=yes, which search.run's switches (resume=yes) take.
    assert Config.from_flat({"residual": text}).residual is value
    assert overrides.parse_bool("resume", text) is value


def test_prose_is_wrapped_between_words_on_a_terminal_and_left_whole_elsewhere(monkeypatch, capsys):
    # The retrain's lines ran to 200 characters, broken mid-word by an 80-column terminal.
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    line = "config (differences from the defaults): " + " ".join(f"key{i}=value{i}" for i in range(20))
    overrides.say(line)
    assert capsys.readouterr().out == line + "\n"  # a pipe or a log: one line per fact
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "80")
    overrides.say(line)
    shown = terminal.getvalue().splitlines()
    assert len(shown) > 1 and max(map(len, shown)) <= 80 and all(s.startswith("  ") for s in shown[1:])
    assert " ".join(part.strip() for part in shown) == line  # every word whole


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_once_the_command_has_done_and_said_everything_changes_nothing(tmp_path, signum):
    # It arrived while Python tore its modules down (a second for results.show): the command then
    # ended as killed, 130 or 143 with no line, after printing its whole result.
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "done.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "from model import overrides\n"
        "def main(argv):\n"
        f"    atexit.register(lambda: (os.kill(os.getpid(), signal.{signum}), time.sleep(0.5)))  # in the exit\n"
        "    print('the result')\n"
        "    return 0\n"
        "overrides.command(main)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent.parent, env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert (done.returncode, done.stdout, done.stderr) == (0, "the result\n", "")
