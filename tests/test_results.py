"""results/: a real (tiny) Tune experiment collected into Parquet, loaded back and shown.

The trainable trains nothing: it reports made-up learning curves with exactly the metric keys of
search.run's trainable, one report per epoch, so the whole module takes seconds, not minutes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import local_ray

from model.config import Config
from results import load
from results.collect import collect, decimal_of_float32, latest_epochs, parse_result_lines
from results.status import trial_status
from results.schema import EPOCHS, RETRAIN, TRIALS, WINNER_TABLES, read_table, write_table

REPO = Path(__file__).resolve().parents[1]
MAX_EPOCHS = 4
# Final validation accuracy of each trial, by its `dense` width. Trials run one at a time in this
# order, so ASHA (grace 1, eta 2) stops the two weak ones after their first epoch.
CEILING = {64: 0.85, 128: 0.95, 32: 0.60, 16: 0.50, 8: 0.90}
RAISES_AFTER = {128: 2, 8: 0}  # these trials raise after reporting this many epochs
BASE = Config(filters=(8, 16), epochs=MAX_EPOCHS)
RUN = {
    "space": "test", "budget": "tiny", "trials": len(CEILING), "max_epochs": MAX_EPOCHS, "grace": 1, "eta": 2,
    "concurrency": 1, "cpus_per_trial": 1.0, "gpus_per_trial": 0.5, "seed": 0, "subset": None, "val_size": 100,
    "metric": "val_acc", "mode": "max", "started": "2026-11-25T12:00:00",
}


def fake_trainable(config: dict) -> None:
    from ray import tune

    for epoch in range(1, config["epochs"] + 1):
        if RAISES_AFTER.get(config["dense"]) == epoch - 1:
            raise RuntimeError("a trial that fails")
        val_acc = CEILING[config["dense"]] - 0.3 / epoch
        tune.report({
            "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": val_acc + 0.02, "val_loss": 1.2 / epoch,
            "val_acc": val_acc, "lr": config["lr"], "seconds": 90.0, "images_per_second": 600.0 + epoch,
            "params": 1000 + config["dense"], "node": "10.0.0.1",
        })


def retrain_frame(seed: list[int], test_acc: list[float]) -> pd.DataFrame:
    """A RETRAIN table with these seeds and test accuracies."""
    n = len(seed)
    constant = {"test_loss": 0.2, "epochs": 30, "seconds": 60.0, "params": 1064}
    return pd.DataFrame({"seed": seed, "test_acc": test_acc, "test_acc_no_mirror": test_acc,
                         **{name: [value] * n for name, value in constant.items()}})


@pytest.fixture(scope="module")
def ray_runtime():
    with local_ray(__name__):
        yield


@pytest.fixture(scope="module")
def tuned(ray_runtime, tmp_path_factory):
    """(experiment folder, {dense: the status Tune's own results imply}) of a finished tiny search."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    storage = tmp_path_factory.mktemp("runs")
    space = {**BASE.to_flat(), "dense": tune.grid_search(list(CEILING))}
    tuner = tune.Tuner(
        fake_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", max_concurrent_trials=1, reuse_actors=True,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=MAX_EPOCHS, grace_period=1, reduction_factor=2),
        ),
        run_config=tune.RunConfig(storage_path=str(storage), name="exp", verbose=0),
    )
    truth = {}
    for result in tuner.fit():
        epochs = result.metrics.get("training_iteration", 0) if result.metrics else 0
        expected = "error" if result.error else "completed" if epochs == MAX_EPOCHS else "pruned"
        truth[json.loads((Path(result.path) / "params.json").read_text())["dense"]] = expected
    experiment = storage / "exp"
    (experiment / "run.json").write_text(json.dumps(RUN))
    return experiment, truth


@pytest.fixture(scope="module")
def collected(tuned):
    """The experiment after a simulated resume of its completed trial, collected."""
    experiment, _ = tuned
    completed = next(path for path in experiment.glob("*/params.json") if json.loads(path.read_text())["dense"] == 64)
    result_file = completed.parent / "result.json"
    rows = [json.loads(line) for line in result_file.read_text().splitlines()]
    # A restore from the epoch-2 checkpoint re-runs epochs 3 and 4 and appends their rows again.
    rerun = [{**row, "val_acc": row["val_acc"] + 0.01} for row in rows if row["training_iteration"] > 2]
    with result_file.open("a") as out:
        out.writelines(json.dumps(row) + "\n" for row in rerun)
    collect(experiment)
    return experiment


@pytest.mark.slow
def test_trials_table_has_every_trial_once_with_its_schema(collected):
    table = pq.read_table(collected / "report" / "trials.parquet")
    assert table.schema.equals(TRIALS)
    trials = table.to_pandas()
    assert len(trials) == len(CEILING) and trials["trial_id"].is_unique
    assert sorted(trials["dense"]) == sorted(CEILING)
    assert trials["filters"].eq("8,16").all()  # tuples as text, as Config.to_flat() writes them
    assert trials["gpus_per_trial"].eq(0.5).all()


@pytest.mark.slow
def test_statuses_match_what_tune_did(collected, tuned):
    _, truth = tuned
    trials = pd.read_parquet(collected / "report" / "trials.parquet").set_index("dense")
    assert trials["status"].to_dict() == truth
    assert {"completed", "pruned", "error"} <= set(truth.values())
    never_reported = trials.loc[8]
    assert never_reported["status"] == "error" and never_reported["epochs_run"] == 0
    assert pd.isna(never_reported["params"]) and never_reported["seconds"] == 0.0
    assert trials.loc[128, ["status", "epochs_run"]].tolist() == ["error", 2]


def test_status_of_an_interrupted_trial():
    assert trial_status("TERMINATED", MAX_EPOCHS, MAX_EPOCHS) == "completed"
    assert trial_status("TERMINATED", 1, MAX_EPOCHS) == "pruned"
    assert trial_status("ERROR", MAX_EPOCHS, MAX_EPOCHS) == "error"
    for status in ("PENDING", "RUNNING", "PAUSED"):
        assert trial_status(status, 2, MAX_EPOCHS) == "unfinished"


@pytest.mark.slow
def test_epochs_are_deduplicated_keeping_the_rerun(collected):
    table = pq.read_table(collected / "report" / "epochs.parquet")
    assert table.schema.equals(EPOCHS)
    epochs = table.to_pandas()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    trials = pd.read_parquet(collected / "report" / "trials.parquet")
    assert epochs.groupby("trial_id").size().to_dict() == trials.set_index("trial_id")["epochs_run"][lambda n: n > 0].to_dict()
    resumed = trials.loc[trials["dense"] == 64, "trial_id"].item()
    curve = epochs[epochs["trial_id"] == resumed].set_index("epoch")["val_acc"]
    assert curve[4] == pytest.approx(0.85 - 0.3 / 4 + 0.01)  # the re-run's row, not the first one
    assert curve[2] == pytest.approx(0.85 - 0.3 / 2)


def test_rows_of_a_rolled_back_attempt_are_dropped():
    # Attempt one reached epoch 3; the restore went back to epoch 1 and ASHA stopped it at 2.
    rows = pd.DataFrame({"epoch": [1, 2, 3, 2], "val_acc": [0.1, 0.2, 0.3, 0.25]})
    assert latest_epochs(rows).to_dict("list") == {"epoch": [1, 2], "val_acc": [0.1, 0.25]}


def test_accuracies_a_float32_mean_made_are_collected_as_their_decimals():
    assert decimal_of_float32(0.7360000014305115) == 0.736  # float32's 0.736, from trainers before hits / images
    assert decimal_of_float32(0.5799999833106995) == 0.58
    assert decimal_of_float32(1 / 3) == 1 / 3  # hits / images in float64: kept as it is
    assert decimal_of_float32(0.75) == 0.75
    assert math.isnan(decimal_of_float32(float("nan")))


def test_only_a_torn_last_line_of_a_result_file_is_dropped():
    assert parse_result_lines('{"epoch": 1}\n{"epoch": 2}\n', "f") == ([{"epoch": 1}, {"epoch": 2}], False)
    assert parse_result_lines('{"epoch": 1}\n{"epo', "f") == ([{"epoch": 1}], True)  # killed mid-line
    assert parse_result_lines("", "f") == ([], False)
    with pytest.raises(ValueError, match="f: line 2 is not JSON"):  # damage before the end
        parse_result_lines('{"epoch": 1}\n{"epo\n{"epoch": 3}\n', "f")
    with pytest.raises(ValueError, match="line 2 is not JSON"):  # a whole line (it has its newline) is no torn write
        parse_result_lines('{"epoch": 1}\n{"epo\n', "f")


@pytest.mark.slow
def test_collect_counts_a_torn_last_line_and_refuses_a_damaged_file(tuned, tmp_path):
    import logging

    from internals import EXPERIMENT_ANALYSIS_LOGGER

    copy = tmp_path / "copy"
    shutil.copytree(tuned[0], copy)
    # The completed trial's file, by its config: not the first in directory order, which may be an
    # errored trial's empty file.
    params = next(path for path in copy.glob("*/params.json") if json.loads(path.read_text())["dense"] == 64)
    result_file = params.parent / "result.json"
    trial_id = json.loads(result_file.read_text().splitlines()[0])["trial_id"]
    rows = result_file.read_text()
    result_file.write_text(rows + '{"epoch": 9, "val_a')
    log = logging.getLogger(EXPERIMENT_ANALYSIS_LOGGER)
    level, filters = log.level, list(log.filters)
    collected = collect(copy)
    assert collected.torn == (trial_id,)
    assert (log.level, log.filters) == (level, filters)  # the logger is left as it was
    trials = load(copy).trials.set_index("trial_id")
    assert trials.loc[trial_id, "epochs_run"] == len({json.loads(line)["epoch"] for line in rows.splitlines()})
    result_file.write_text('{"epoch": 9, "val_a\n' + rows)
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        collect(copy)


def test_collect_takes_a_quoted_tilde_as_the_home_folder(tuned, tmp_path, monkeypatch, capsys):
    from results.collect import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tuned[0], tmp_path / "runs" / "x")
    assert main(["~/runs/x"]) == 0, capsys.readouterr().err
    assert (tmp_path / "runs" / "x" / "report" / "best.json").is_file()
    assert not (tmp_path / "~").exists()


@pytest.mark.slow
def test_best_is_the_completed_trial_with_the_best_last_epoch(collected):
    best = json.loads((collected / "report" / "best.json").read_text())
    trials = pd.read_parquet(collected / "report" / "trials.parquet")
    completed = trials[trials["status"] == "completed"]
    winner = completed.loc[completed["last_val_acc"].idxmax()]
    assert best["trial_id"] == winner["trial_id"] and best["status"] == "completed"
    # A trial that failed (dense=128) validated higher, but best.json prefers completed trials.
    assert trials["best_val_acc"].max() > winner["best_val_acc"]
    expected = {"val_acc": pytest.approx(winner["last_val_acc"]), "val_loss": pytest.approx(1.2 / 4), "epoch": 4, "epochs_run": 4}
    assert best["metrics"] == expected
    assert Config.from_flat(best["config"]) == Config(filters=(8, 16), epochs=MAX_EPOCHS, dense=int(winner["dense"]))


@pytest.mark.slow
def test_no_temporary_files_are_left(collected):
    assert sorted(path.name for path in (collected / "report").iterdir()) == ["best.json", "epochs.parquet", "trials.parquet"]


@pytest.mark.slow
def test_load_gives_the_tables_and_empty_winner_tables(collected):
    for path in (collected, f"file://{collected}"):
        exp = load(path)
        assert len(exp.trials) == len(CEILING) and exp.best["trial_id"] in set(exp.trials["trial_id"])
        assert exp.run["max_epochs"] == MAX_EPOCHS
        for name, schema in WINNER_TABLES.items():
            frame = getattr(exp, name)
            assert frame.empty and list(frame.columns) == schema.names
        assert str(exp.retrain.dtypes["test_acc"]) == "float64" and str(exp.retrain.dtypes["seed"]) == "int64"


@pytest.mark.slow
def test_load_without_a_report_says_how_to_make_one(tuned, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tuned[0], copy)
    shutil.rmtree(copy / "report", ignore_errors=True)
    with pytest.raises(ValueError, match="has no report yet: a search writes it as it ends; for one that was "
                                         "killed, python -m results.collect"):
        load(copy)
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "missing")


@pytest.mark.slow
def test_collect_reads_a_uri(tuned, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tuned[0], copy)
    collected = collect(f"file://{copy}")
    assert collected.report == f"file://{copy}/report" and collected.torn == ()
    assert len(load(f"file://{copy}").trials) == len(CEILING)


def test_write_table_rejects_other_columns(tmp_path):
    frame = retrain_frame(seed=[0], test_acc=[0.93])
    with pytest.raises(ValueError, match="missing columns params"):
        write_table(frame.drop(columns="params"), tmp_path / "retrain.parquet", RETRAIN)
    with pytest.raises(ValueError, match="unexpected columns note"):
        write_table(frame.assign(note="x"), tmp_path / "retrain.parquet", RETRAIN)
    with pytest.raises(ValueError, match="column seed does not convert to int64"):
        write_table(frame.assign(seed="zero"), tmp_path / "retrain.parquet", RETRAIN)
    assert list(tmp_path.iterdir()) == []
    write_table(frame[list(reversed(frame.columns))], tmp_path / "retrain.parquet", RETRAIN)  # column order is the schema's
    assert read_table(tmp_path / "retrain.parquet", RETRAIN).to_dict("list") == frame.to_dict("list")
    with pytest.raises(ValueError, match="does not match its table's schema"):
        read_table(tmp_path / "retrain.parquet", EPOCHS)


def test_a_table_written_before_a_config_field_existed_reads_with_its_default(tmp_path):
    # A trials table of an older checkout has no column for a Config field added since; the field's
    # default is the behaviour that trained those trials. A missing column that is no Config field is still refused.
    frame = pd.DataFrame({name: [None] for name in TRIALS.names}).assign(trial_id="a", bn_bias_lr=16.0)
    write_table(frame, tmp_path / "trials.parquet", TRIALS)
    table = pq.read_table(tmp_path / "trials.parquet")
    pq.write_table(table.drop_columns(["bn_bias_lr"]), tmp_path / "old.parquet")
    old = read_table(tmp_path / "old.parquet", TRIALS)
    assert old.columns.tolist() == TRIALS.names and old["bn_bias_lr"].tolist() == [Config().bn_bias_lr]
    pq.write_table(table.drop_columns(["best_val_acc"]), tmp_path / "damaged.parquet")
    with pytest.raises(ValueError, match="missing columns best_val_acc"):
        read_table(tmp_path / "damaged.parquet", TRIALS)


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    frame = retrain_frame(seed=[0], test_acc=[0.93])
    write_table(frame, tmp_path / "retrain.parquet", RETRAIN)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        write_table(frame.assign(seed=1), tmp_path / "retrain.parquet", RETRAIN)
    assert [path.name for path in tmp_path.iterdir()] == ["retrain.parquet"]
    assert read_table(tmp_path / "retrain.parquet", RETRAIN)["seed"].tolist() == [0]


def test_write_table_through_a_remote_style_filesystem(tmp_path, monkeypatch):
    # Not a LocalFileSystem: the write-then-move path that s3:// or gs:// URIs take.
    import results.schema

    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    monkeypatch.setattr(results.schema, "locate", lambda path: (subtree, os.fspath(path)))
    frame = retrain_frame(seed=[0], test_acc=[0.93])
    write_table(frame, "bucket/winner/retrain.parquet", RETRAIN)
    assert read_table("bucket/winner/retrain.parquet", RETRAIN)["test_acc"].tolist() == [0.93]
    assert [path.name for path in (tmp_path / "bucket" / "winner").iterdir()] == ["retrain.parquet"]


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_show_prints_the_summary_and_the_top_trials(collected):
    write_table(
        retrain_frame(seed=[0, 1], test_acc=[0.930, 0.934]),
        collected / "winner" / "retrain.parquet",
        RETRAIN,
    )
    shown = _run("results.show", str(collected))
    assert shown.returncode == 0, shown.stderr
    best = json.loads((collected / "report" / "best.json").read_text())["trial_id"]
    # 8 epochs of 90 s ran (4 + 2 + 1 + 1), at 0.5 GPU each; test accuracy 93.2% ± 0.28% over 2 seeds.
    summary = ("0.20 trial-hours, 0.10 GPU-hours", "93.20% ± 0.28%", "92.74%")
    for expected in ("top 5 of 5 trials", best, "dense", "completed", "pruned", "error", *summary):
        assert expected in shown.stdout
    side_by_side = _run("results.show", str(collected), str(collected))
    assert side_by_side.returncode == 0 and "side by side" in side_by_side.stdout


def test_command_lines_reject_a_bad_path_in_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(RUN))  # has run.json, but no Tune files
    for module, path in (("results.show", tmp_path / "missing"), ("results.collect", tmp_path)):
        done = _run(module, str(path))
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for module in ("results.show", "results.collect"):  # a variable that was never set, "$RUN"
        done = _run(module, "")
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == "error: the experiment folder is empty; give one such as runs/NAME (or a URI)\n"
    assert [path.name for path in tmp_path.iterdir()] == ["run.json"]  # nothing written
