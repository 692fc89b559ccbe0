"""Bad values anywhere are refused with one line: the Config itself, model.train's command line
(exit 2, nothing trained); --help and -h print usage for every command; a trial's device follows
Ray's GPU assignment only; one validation split for a given val_size, whatever the command."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from model import data as fmnist
from model.config import Config
from search import devices, retrain, run

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


BAD_TRAIN = [
    (["epochs=inf"], "epochs='inf': expected int"),
    (["batch_size=inf"], "batch_size='inf': expected int"),
    (["seed=inf"], "seed='inf': expected int"),
    (["seed=99999999999999999999"], "seed=99999999999999999999: must lie between 0 and"),
    (["rotation=inf"], "rotation=inf: must be a finite number"),
    (["lr=nan"], "lr=nan: must be a finite number"),
    (["subset=10"], "batch_size=64 exceeds the 10 training images"),
    (["val_size=60000"], "val_size=60000: must lie between 0 and 59,999"),
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


COMMANDS = ["model.train", "search.run", "search.retrain", "search.record", "results.show", "cluster_check.__main__"]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_prints_usage_for_help(capsys, name, flag):
    command = importlib.import_module(name)
    assert command.main([flag, "anything=else"]) == 0
    out, err = capsys.readouterr()
    first = out.splitlines()[0]
    assert f"python -m {name.removesuffix('.__main__')} " in first and err == "", out + err
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
