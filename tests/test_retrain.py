"""The final retrain: seeds as real Ray tasks on a local Ray, test-set tables that agree with each
other, a model.pt that rebuilds from its own config, an ONNX file that agrees with PyTorch, PNG
figures, a run folder given as a file:// URI, a seed retried after its worker died, and bad input
rejected with exit code 2, one line on stderr and nothing created."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
import torch

from model import evaluation, export
from model.config import Config, field_types
from model.data import CLASSES
from results.schema import EPOCHS, RETRAIN_EPOCHS, TRIALS, WINNER_TABLES, empty_frame, read_table, write_table
from search.retrain import seeds, winner
from search.retrain.__main__ import main as retrain_main
from search.retrain.plan import parse_args
from search.runtime import ray_session as session
from search.runtime.ray_session import check_address, ray_session

REPO = Path(__file__).resolve().parents[1]
SMALL = ["filters=16,32", "dense=64", "batch_size=128", "lr=2e-3"]
FIGURES = ("learning_curves.png", "confusion.png", "predictions.png", "misclassified.png")


# ---------------------------------------------------------------- pure pieces, no Ray, no data


def test_confusion_matrix_and_per_class_follow_sklearns_definitions() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])
    cm = evaluation.confusion_matrix(labels, predicted, num_classes=4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    scores = evaluation.per_class(cm)
    assert np.allclose(scores.precision, [2 / 3, 1 / 2, 3 / 4, 0])  # class 3 never predicted: 0/0 -> 0
    assert np.allclose(scores.recall, [2 / 3, 1 / 2, 3 / 4, 0])
    assert np.allclose(scores.f1, [2 / 3, 1 / 2, 3 / 4, 0])
    assert scores.support.tolist() == [3, 2, 4, 0]
    assert evaluation.accuracy(cm) == pytest.approx(6 / 9)
    assert evaluation.confusion_matrix(torch.tensor(labels), torch.tensor(predicted), 4).tolist() == cm.tolist()
    with pytest.raises(ValueError, match="expected 0..3"):
        evaluation.confusion_matrix([4], [0], num_classes=4)


def test_predictions_are_argmax_with_softmax_confidence() -> None:
    logits = np.array([[0.0, 0.0, np.log(2.0)], [5.0, 0.0, 0.0]])
    predicted, confidence = evaluation.predictions(logits)
    assert predicted.tolist() == [2, 0]
    assert confidence[0] == pytest.approx(0.5)


def test_check_address() -> None:
    for ok in ("", "auto", "127.0.0.1:6379", "head-node:6379", "ray://head:10001"):
        assert check_address(ok) == ok
    for bad in ("local", "head", "http://x", "a b:1"):
        with pytest.raises(ValueError, match="host:port"):
            check_address(bad)


# ---------------------------------------------------------------- bad input: exit 2, nothing created


@pytest.mark.parametrize(
    "args",
    [
        ["{missing}"],  # no such run and no preset to start from
        ["{missing}", "trial=abc"],
        ["{missing}", "config=seed", "bogus=1"],
        ["{missing}", "config=nope"],
        ["{missing}", "config=seed", "trial=abc"],
        ["{missing}", "config=seed", "seeds=0"],
        ["{missing}", "config=seed", "epochs=many"],
        ["{missing}", "config=seed", "filters=0"],
        ["{missing}", "config=seed", "device=tpu"],
        ["{missing}", "config=seed", "address=somewhere"],
        ["{missing}", "config=seed", "gpus_per_trial=0", "device=cuda"],
        ["{missing}", "config=seed", "subset=100", "batch_size=128"],
        ["{missing}", "config=seed", "data_dir={missing}/data"],
        ["{missing}", "config=seed", "seeds=1000000000"],
        ["{missing}", "config=seed", "epochs=inf"],
        ["{missing}", "config=seed", "seed=4294967295", "seeds=2"],  # the second seed would not fit 32 bits
        ["{missing}", "config=seed", "gpus_per_trial=nan"],
        ["{missing}", "config=seed", "cpus_per_trial=inf"],
        ["{missing}", "config=seed", "cpus_per_trial=100000"],  # more than this machine has: refused before Ray starts
        ["{missing}", "config=seed", "gpus_per_trial=64"],
        ["{missing}", "config=seed", "rotation=inf"],
        ["{missing}", "config=seed", "data_dir="],
        ["{file}", "config=seed"],
        ["{file}/runs/x", "config=seed"],
        ["file://{missing}"],
        ["nope://bucket/x", "config=seed"],
        ["-x"],
        ["config=seed"],  # the run folder must come first
        [],
    ],
)
def test_bad_input_exits_2_with_one_line_and_creates_nothing(tmp_path, capsys, args) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    fill = {"{missing}": str(tmp_path / "runs" / "missing"), "{file}": str(tmp_path / "a-file")}
    argv = [next((a.replace(k, v) for k, v in fill.items() if k in a), a) for a in args]
    assert retrain_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_first_seed_too_large_for_its_seeds_says_the_seeds_run_from_it(tmp_path, capsys) -> None:
    assert retrain_main([str(tmp_path / "runs" / "x"), "config=seed", "seed=4294967295", "seeds=2"]) == 2
    assert capsys.readouterr().err == ("error: seed=4294967295: must lie between 0 and 4,294,967,294 (the first of "
                                       "seeds=2: seed to seed + 1, each at most 4,294,967,295)\n")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_run_folder_is_refused_before_training(tmp_path, capsys) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    if os.geteuid() == 0:  # root ignores permissions, not the immutable flag
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("root, and chattr +i is not available here")
    else:
        folder.chmod(0o555)
    try:
        assert retrain_main([str(folder / "x"), "config=seed"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{folder} is not writable by this user" in err, err
        assert list(folder.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_a_run_folder_in_use_is_refused_before_ray_starts(tmp_path, capsys, lock_holder) -> None:
    run = tmp_path / "runs" / "busy"
    holder = lock_holder(run)
    assert retrain_main([str(run), "config=seed", "subset=600"]) == 2
    out, err = capsys.readouterr()
    # One line naming who holds it, and nothing printed before: the retrain's first lines come once Ray starts.
    assert err.count("\n") == 1 and f"{run} is in use by a test (pid {holder.pid} on " in err, err
    assert out == "" and sorted(p.name for p in run.iterdir()) == ["lock.json"]
    # Its best trial, while the search runs: in use too, not "no report; run results.collect" (it had none yet).
    assert retrain_main([str(run)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and f"{run} is in use by a test" in err and out == "", err


def test_a_folder_without_search_results_is_rejected(tmp_path, capsys) -> None:
    assert retrain_main([str(tmp_path)]) == 2
    assert "config=seed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_a_retrain_only_is_named_as_such(tmp_path, capsys) -> None:
    (tmp_path / "pre" / "winner").mkdir(parents=True)  # what `search.retrain runs/pre config=seed` leaves
    for args in ([], ["trial=t_1"]):
        assert retrain_main([str(tmp_path / "pre"), *args]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {tmp_path / 'pre'} holds a retrain only, no search to take a trial from; give config=seed|baseline\n"


def test_the_module_exits_2_on_a_bad_path(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "search.retrain", str(tmp_path / "nope"), "seeds=2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no such run folder" in done.stderr
    assert not (tmp_path / "nope").exists()


# ---------------------------------------------------------------- choosing the config from a search


def _fake_experiment(folder: Path) -> None:
    """The files results.load reads: run.json, report/best.json, report/trials and epochs tables."""
    report = folder / "report"
    report.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"space": "seed"}))  # what results.load reads of it
    rows = []
    for trial_id, cfg, acc in (("t_best", Config(lr=1e-3, filters=(32, 64)), 0.91), ("t_other", Config(dense=128), 0.88)):
        rows.append({
            "trial_id": trial_id, "status": "completed", "epochs_run": 3, "best_val_acc": acc, "last_val_acc": acc,
            "best_val_loss": 0.3, "last_val_loss": 0.3, "params": 1, "seconds": 1.0, "images_per_second": 1.0,
            "node": "n", "cpus_per_trial": 1.0, "gpus_per_trial": 0.0, **cfg.to_flat(),
        })
    write_table(pd.DataFrame(rows), report / "trials.parquet", TRIALS)
    write_table(empty_frame(EPOCHS), report / "epochs.parquet", EPOCHS)
    config = {k: v for k, v in rows[0].items() if k in field_types()}
    best = {"trial_id": "t_best", "status": "completed", "config": config, "metrics": {"val_acc": 0.91}}
    (report / "best.json").write_text(json.dumps(best))


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["local path", "file:// URI"])
def test_the_best_trial_or_a_named_one_is_retrained(tmp_path, scheme) -> None:
    _fake_experiment(tmp_path)
    run = f"{scheme}{tmp_path}"
    plan = parse_args([run, "epochs=7", "seeds=2", "dense=32"])
    # What was retrained, as winner.json and results.show name it: the best trial, with the keys given.
    assert plan.source == "best trial t_best with dense=32" and plan.run == run
    assert (plan.cfg.filters, plan.cfg.lr, plan.cfg.dense, plan.cfg.epochs) == ((32, 64), 1e-3, 32, 7)
    assert plan.seeds == (0, 1)
    plan = parse_args([run, "trial=t_other", "seed=5"])
    assert plan.source == "trial t_other" and plan.cfg.dense == 128 and plan.cfg.epochs == 30
    assert parse_args([run, "config=seed", "lr=2e-3", "filters=8,16"]).source == "preset seed with lr=2e-3 filters=8,16"
    assert plan.seeds == (5, 6, 7)
    with pytest.raises(ValueError, match="not a trial"):
        parse_args([run, "trial=t_nope"])


def test_subset_takes_all_or_a_count_in_any_integer_spelling_and_its_errors_name_no_val_size(tmp_path) -> None:
    # The retrain trains on every training image (it takes no val_size): its errors must not name one.
    _fake_experiment(tmp_path)
    assert parse_args([str(tmp_path), "subset=all"]).subset is None
    assert parse_args([str(tmp_path), "subset=1e3"]).subset == 1000
    with pytest.raises(ValueError) as info:
        parse_args([str(tmp_path), "subset=10", "batch_size=64"])
    assert "batch_size=64 exceeds the 10 training images (subset=10)" in str(info.value)
    assert "val_size" not in str(info.value)


def test_a_quoted_tilde_in_the_run_folder_is_the_home_folder(tmp_path, monkeypatch) -> None:
    # As storage= is: '~/runs/x' in a script names the home folder's runs/x, not a folder called ~.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    _fake_experiment(tmp_path / "runs" / "x")
    plan = parse_args(["~/runs/x", "seeds=1"])
    assert plan.run == str(tmp_path / "runs" / "x") and plan.source == "best trial t_best"
    with pytest.raises(ValueError, match="~nosuchuser9 is no user's home folder"):
        parse_args(["~nosuchuser9/runs/x"])
    assert not (tmp_path / "~nosuchuser9").exists()


def test_a_search_whose_every_trial_failed_says_so_not_yet(tmp_path) -> None:
    _fake_experiment(tmp_path)
    trials = read_table(tmp_path / "report" / "trials.parquet", TRIALS)
    write_table(trials.assign(status="error", epochs_run=0), tmp_path / "report" / "trials.parquet", TRIALS)
    (tmp_path / "report" / "best.json").write_text("null")  # as results.collect writes it when no trial reported
    with pytest.raises(ValueError, match=r"no trial of the search ended with a result \(trials: 2 error\), so there is no best"):
        parse_args([str(tmp_path)])


@pytest.mark.parametrize(("cluster", "expected"), [
    ({"CPU": 16, "GPU": 1}, (1.0, 1 / 3, "cuda")),  # three seeds at once on the one GPU
    ({"CPU": 16, "GPU": 2}, (1.0, 0.5, "cuda")),  # two a GPU
    ({"CPU": 16, "GPU": 4}, (1.0, 1.0, "cuda")),  # a GPU each
    ({"CPU": 6}, (2.0, 0.0, "cpu")),  # the CPUs shared between the seeds
])
def test_the_seeds_share_the_gpus_there_are(tmp_path, cluster, expected) -> None:
    plan = parse_args([str(tmp_path / "run"), "config=seed", "seeds=3"])
    assert seeds.resources(plan, cluster) == pytest.approx(expected)
    # Ray fits three thirds on one GPU (its quantities are fixed-point, 1e-4).
    assert 3 * round(seeds.resources(plan, {"CPU": 16, "GPU": 1})[1], 4) <= 1


def test_the_heartbeat_says_a_seed_past_its_last_epoch_is_on_the_test_set() -> None:
    # 3 epochs: seed 0 has reported all three (it is being tested), seed 1 one of them.
    line = seeds.still_running([0, 1], {0: 3, 1: 1}, epochs=3)
    assert line == "still running: seed 0 on the test set, seed 1 in epoch 2"


def test_winner_files_reach_an_object_store_one_object_each(tmp_path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    for name, content in (("retrain.parquet", b"table"), ("model.pt", b"weights")):
        (staging / name).write_bytes(content)
    store = tmp_path / "store"
    store.mkdir()
    fs = pafs.SubTreeFileSystem(str(store), pafs.LocalFileSystem())  # not the local filesystem's type
    winner.upload(staging, fs, "runs/x/winner")
    assert sorted(p.name for p in (store / "runs" / "x" / "winner").iterdir()) == ["model.pt", "retrain.parquet"]
    assert (store / "runs" / "x" / "winner" / "model.pt").read_bytes() == b"weights"


# ---------------------------------------------------------------- the real thing, on a local Ray


def test_one_epoch_s_learning_curves_have_one_tick_at_that_epoch() -> None:
    from results.figures import learning_curves_figure

    one = pd.DataFrame({"seed": [0, 1], "epoch": [1, 1], "train_loss": [0.5, 0.6], "train_acc": [0.8, 0.7]})
    for ax in learning_curves_figure(one).axes:
        assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0, 2)  # not 0.96-1.04
    three = pd.DataFrame({"seed": 0, "epoch": [1, 2, 3], "train_loss": [0.5, 0.4, 0.3], "train_acc": [0.7, 0.8, 0.9]})
    for ax in learning_curves_figure(three).axes:
        assert all(tick == int(tick) for tick in ax.get_xticks())


def test_ray_session_shuts_down_and_removes_its_files_after_an_exception(monkeypatch) -> None:
    import tempfile

    import ray

    parent = tempfile.mkdtemp(prefix="t-", dir="/tmp")  # short: Ray's socket paths live below it
    monkeypatch.setattr(session, "TEMP_PARENT", parent)
    try:
        with pytest.raises(KeyError):
            with ray_session(num_cpus=1) as resources:
                assert ray.is_initialized() and resources["CPU"] == 1
                (own,) = os.listdir(parent)  # the session's files, in a folder of its own
                assert glob.glob(os.path.join(parent, own, "session_*", "sockets"))
                raise KeyError("boom")
        assert not ray.is_initialized()
        assert os.listdir(parent) == []
    finally:
        os.rmdir(parent)


SIGTERM_AFTER_THE_SESSION = """
import os, signal, sys, time
from search.runtime.ray_session import ray_session
signal.signal(signal.SIGTERM, lambda signum, frame: print("handled", flush=True))  # as a command sets it
with ray_session(num_cpus=1):
    pass
os.kill(os.getpid(), signal.SIGTERM)  # as during the report that follows a search
time.sleep(0.5)
print("alive", flush=True)
"""


def test_sigterm_after_the_ray_session_reaches_the_command_s_handler():
    # ray.shutdown() resets SIGTERM's C handler to the default while Python still names its own:
    # without setting it again, the process dies at once (-15) and leaves its lock behind.
    done = subprocess.run([sys.executable, "-c", SIGTERM_AFTER_THE_SESSION], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and done.stdout.split() == ["handled", "alive"], (done.returncode, done.stderr[-2000:])


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or below it, by the parent ids in /proc (OSError once one ends)."""
    while pid > 1:
        if pid == ancestor:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat[stat.rindex(")") + 2:].split()[1])  # the field after the state; the name may hold spaces
    return False


def test_a_seed_whose_worker_dies_is_retried(fmnist_dir) -> None:
    argv = ["unused", "config=seed", "seeds=1", "epochs=1", "subset=600", f"data_dir={fmnist_dir}", *SMALL]
    plan = parse_args(argv)  # nothing is written to the run folder: train_seeds returns the results
    split, (test_images, test_labels) = seeds.load_data(plan)
    test = (test_images[:500], test_labels[:500])
    killed: list[int] = []

    def kill_the_first_attempt() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
                pid = int(cmdline.split("/")[2])
                try:
                    # Only this test's Ray: its workers descend from this process (driver -> raylet
                    # -> worker); another Ray on the machine may run the same task name.
                    if open(cmdline, "rb").read().startswith(b"ray::retrain_seed") and _descends_from(pid, os.getpid()):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
                except OSError:  # a process that ended meanwhile
                    continue
            time.sleep(0.05)

    # A process of that name outside this test's Ray (as another Ray's worker on the machine would
    # be), started first so that /proc lists it first: it must survive. bash exits at once, so the
    # decoy is nobody's child here.
    decoy = subprocess.run(["bash", "-c", "exec -a ray::retrain_seed sleep 300 >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)
    decoy_pid = int(decoy.stdout)
    killer = threading.Thread(target=kill_the_first_attempt)
    try:
        with ray_session(num_cpus=1):
            killer.start()
            (out,) = seeds.train_seeds(plan, split, test, log=lambda line: None)
            killer.join()
        decoy_cmdline = Path(f"/proc/{decoy_pid}/cmdline")
        assert decoy_cmdline.exists() and decoy_cmdline.read_bytes().startswith(b"ray::retrain_seed"), "the decoy was killed"
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by mistake: the assertion above says so
            os.kill(decoy_pid, signal.SIGKILL)
    assert killed and killed[0] != decoy_pid, "never saw the seed's task running"
    assert out["seed"] == 0 and len(out["epochs"]) == 1 and out["device"] == "cpu"


def test_the_staging_folders_a_killed_retrain_left_are_removed_by_the_next(tmp_path, monkeypatch) -> None:
    # SIGKILL while winner/ was being written left .winner.HEX.tmp (and publish's .winner.old-PID),
    # and the next retrain, which takes over the lock, left them there.
    from types import SimpleNamespace

    from search.retrain import winner

    run = tmp_path / "runs" / "x"
    (run / ".winner.0123456789abcdef0123456789abcdef.tmp").mkdir(parents=True)
    (run / ".winner.0123456789abcdef0123456789abcdef.tmp" / "model.pt").write_bytes(b"half written")
    (run / ".winner.old-4242").mkdir()
    (run / "report").mkdir()

    def write_winner(plan, outs, test, folder: Path) -> dict:
        (folder / "retrain.parquet").write_bytes(b"the tables")
        return {}

    monkeypatch.setattr(winner, "write_winner", write_winner)
    assert winner.write_and_publish(SimpleNamespace(run=str(run)), [], (None, None)) == ({}, ["retrain.parquet"])
    assert sorted(p.name for p in run.iterdir()) == ["report", "winner"]


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, fmnist_dir) -> tuple[Path, str]:
    """2 seeds x 1 epoch on 3,000 training images, into a run folder that does not exist yet, given
    as a file:// URI (as a search stored at a URI would be)."""
    run = tmp_path_factory.mktemp("retrain") / "runs" / "tiny"
    argv = [f"file://{run}", "config=seed", "seeds=2", "epochs=1", "subset=3000", f"data_dir={fmnist_dir}", *SMALL]
    code = subprocess.run([sys.executable, "-m", "search.retrain", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert code.returncode == 0, code.stderr[-3000:]
    return run, code.stdout


@pytest.mark.slow
def test_retrain_writes_the_winner_folder(retrained) -> None:
    run, stdout = retrained
    assert sorted(p.name for p in run.iterdir()) == ["winner"]  # no temporary folder or lock left behind
    names = {p.name for p in (run / "winner").iterdir()}
    assert names == {f"{t}.parquet" for t in WINNER_TABLES} | set(FIGURES) | {"model.pt", "model.onnx"}
    assert "test accuracy over 2 seeds" in stdout and "92.74%" in stdout
    assert "not comparable with the report's figures" in stdout  # a subset for 1 epoch, not the report's recipe
    assert "argmax agreement 10,000/10,000" in stdout

    tables = {name: read_table(run / "winner" / f"{name}.parquet", schema) for name, schema in WINNER_TABLES.items()}
    assert tables["retrain"]["seed"].tolist() == [0, 1]
    assert tables["retrain"]["epochs"].tolist() == [1, 1]
    assert tables["retrain"]["test_acc"].between(0.3, 1).all()  # one short epoch learns something
    assert tables["retrain_epochs"][["seed", "epoch"]].values.tolist() == [[0, 1], [1, 1]]
    assert list(tables["retrain_epochs"].columns) == RETRAIN_EPOCHS.names

    confusion = tables["confusion"]
    assert confusion["true"].tolist() == list(CLASSES) and list(confusion.columns[1:]) == list(CLASSES)
    cm = confusion[list(CLASSES)].to_numpy()
    assert cm.sum() == 10_000 and cm.sum(axis=1).tolist() == [1000] * 10
    assert np.trace(cm) / 10_000 == pytest.approx(tables["retrain"]["test_acc"][0], abs=1e-6)

    per_class = tables["per_class"]
    assert per_class["class"].tolist() == list(CLASSES)
    assert np.allclose(per_class["precision"], np.diag(cm) / np.maximum(cm.sum(axis=0), 1))
    assert np.allclose(per_class["recall"], np.diag(cm) / cm.sum(axis=1))
    p, r = per_class["precision"].to_numpy(), per_class["recall"].to_numpy()
    assert np.allclose(per_class["f1"], np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0))
    assert per_class["support"].tolist() == cm.sum(axis=1).tolist()


@pytest.mark.slow
def test_model_pt_rebuilds_and_onnx_agrees_with_pytorch(retrained, test_set) -> None:
    run, _ = retrained
    payload = torch.load(run / "winner" / "model.pt", weights_only=True)
    assert set(payload) >= {"config", "state_dict", "metadata"} and payload["metadata"]["seed"] == 0
    cfg, net = export.load_model(run / "winner" / "model.pt")
    assert cfg.filters == (16, 32) and cfg.dense == 64 and cfg.seed == 0 and cfg.epochs == 1

    images, labels = test_set
    torch_logits = export.torch_logits(net, images)
    onnx_logits = export.onnx_logits(run / "winner" / "model.onnx", images)
    assert onnx_logits.shape == (10_000, 10)
    assert (torch_logits.argmax(1) == onnx_logits.argmax(1)).all()
    assert np.abs(torch_logits - onnx_logits).max() < 1e-3
    # The rebuilt network is the one the tables describe (up to near-ties between the two float paths).
    stored = read_table(run / "winner" / "confusion.parquet", WINNER_TABLES["confusion"])[list(CLASSES)].to_numpy()
    rebuilt = evaluation.confusion_matrix(labels, torch_logits.argmax(1))
    assert np.abs(rebuilt - stored).sum() <= 20

    import onnx

    graph = onnx.load(str(run / "winner" / "model.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "images" and dims == ["batch", 1, 28, 28]


@pytest.mark.slow
def test_figures_are_png_files(retrained) -> None:
    run, _ = retrained
    for name in FIGURES:
        raw = (run / "winner" / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", raw[16:24])  # the IHDR chunk
        assert width > 300 and height > 200, (name, width, height)


# ---------------------------------------------------------------- progress, SIGTERM, a reader that leaves


def _retrain(argv: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.retrain", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or {**os.environ, "RAY_AUTH_MODE": "disabled"},
                            start_new_session=True)


def test_each_epoch_is_a_line_as_it_ends_and_sigterm_stops_the_retrain_with_exit_143(tmp_path, fmnist_dir) -> None:
    """The seeds are held before their second epoch (conftest.HOLD_TRIALS): the first epoch's line
    is printed while they train on, and SIGTERM (kill, timeout, a scheduler) to the driver ends the
    retrain as Ctrl-C does: one line, exit 143, winner/ untouched, the lock released."""
    from conftest import HOLD_TRIALS, with_site

    gate = tmp_path / "gate"
    gate.mkdir()
    env = with_site(tmp_path, HOLD_TRIALS, {**os.environ, "RAY_AUTH_MODE": "disabled"}, PYTHONUNBUFFERED="1",
                    HOLD_GATE=str(gate), HOLD_EPOCH="1")
    run = tmp_path / "runs" / "held"
    proc = _retrain([str(run), "config=seed", "seeds=2", "epochs=2", "subset=600", f"data_dir={fmnist_dir}", *SMALL], env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300  # a hang's deadline, not a margin to meet
    while sum("epoch 1/2" in line for line in list(lines)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines) + proc.stderr.read()[-3000:]
        time.sleep(0.2)
    assert len(list(gate.glob("held-*"))) == 2 and not (gate / "open").exists()  # printed while training, not after
    epoch_lines = sorted(line.split("] ", 1)[1].split(",")[0] for line in lines if "epoch 1/2" in line)
    assert epoch_lines == ["seed 0: epoch 1/2", "seed 1: epoch 1/2"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, proc.stderr.read()[-3000:]
    reader.join(timeout=60)
    assert proc.stderr.read() == "interrupted: winner/ left as it was\n"
    assert not (run / "winner").exists() and not (run / "lock.json").exists()


def test_a_reader_that_stops_reading_ends_nothing_early(tmp_path, fmnist_dir) -> None:
    """search.retrain ... | head -1: the retrain still finishes and exits 0, without a traceback."""
    run = tmp_path / "runs" / "headed"
    argv = [str(run), "config=seed", "seeds=1", "epochs=1", "subset=600", f"data_dir={fmnist_dir}", *SMALL]
    command = " ".join([sys.executable, "-m", "search.retrain", *argv]) + ' | head -1; exit "${PIPESTATUS[0]}"'
    done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"retrain of {run}: preset seed with {' '.join(SMALL)}\n" and "Traceback" not in done.stderr
    assert (run / "winner" / "model.onnx").exists()
