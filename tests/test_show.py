"""`python -m results.show` as users read it: tables that fit 80 columns without cutting an id or a
number, full width in a file, every hyperparameter on request, one trial in full, importance,
retrains that say what they are, and a folder that holds only a retrain.

The experiments are written directly with the result schemas (no Ray, seconds): 30 trials of the
real `space=full` (its 26 searched hyperparameters drawn from its own Tune domains), whose
validation accuracy depends on the learning rate alone.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray.tune.search.sample import Domain
from rich.cells import cell_len
from rich.console import Console

import spaces
from model.config import Config, preset
from model.overrides import INTERRUPTED
from results import load
from results.numbers import number
from results.schema import CONFIG_COLUMNS, EPOCHS, PER_CLASS, RETRAIN, TRIALS, empty_frame, write_json, write_table
from results.show import all_columns_table, importance_table, main, side_by_side, summary_table, top_trials_table
from results.status import ranked

REPO = Path(__file__).resolve().parents[1]
MAX_EPOCHS = 9
N_TRIALS = 30


def accuracy(lr: float, epoch: int) -> float:
    """Best at lr = 2e-3; a learning curve that rises with the epochs."""
    return 0.93 - 0.08 * abs(math.log10(lr) - math.log10(2e-3)) - 0.05 / epoch


def write_search(folder: Path, space: str = "full", n: int = N_TRIALS, seed: int = 0) -> Path:
    """An experiment folder as search.run + results.collect leave it, for trials of `space`."""
    rng = np.random.default_rng(seed)
    domains = spaces.get(space).PARAMS
    base = {**preset(spaces.get(space).PRESET).to_flat(), "epochs": MAX_EPOCHS}
    trials, epochs = [], []
    for i in range(n):
        config = {**base, **{k: v.sample(random_state=rng) if isinstance(v, Domain) else v for k, v in domains.items()}}
        trial_id = f"{rng.integers(16**8):08x}"
        final = accuracy(config["lr"], MAX_EPOCHS)
        ran = MAX_EPOCHS if final > 0.85 else (1 if i % 2 else 3)  # ASHA stops the weak ones early
        status = "completed" if ran == MAX_EPOCHS else "pruned"
        if i == n - 1:
            status, ran = "error", 2
        curve = [accuracy(config["lr"], e) for e in range(1, ran + 1)]
        for epoch, acc in enumerate(curve, start=1):
            epochs.append({"trial_id": trial_id, "epoch": epoch, "train_loss": 0.5 / epoch, "train_acc": acc + 0.01,
                           "val_loss": 0.4 / epoch, "val_acc": acc, "lr": config["lr"], "seconds": 12.345,
                           "images_per_second": 4321.0, "node": "10.0.0.7"})
        trials.append({
            "trial_id": trial_id, "status": status, "epochs_run": ran, "best_val_acc": max(curve),
            "last_val_acc": curve[-1], "best_val_loss": 0.4 / ran, "last_val_loss": 0.4 / ran, "params": 786_890,
            "seconds": 12.345 * ran, "images_per_second": 4321.0, "node": "10.0.0.7", "cpus_per_trial": 1.0,
            "gpus_per_trial": 0.25, **{name: config[name] for name in CONFIG_COLUMNS},
        })
    trials_frame = pd.DataFrame(trials)
    report = folder / "report"
    write_table(pd.DataFrame(epochs), report / "epochs.parquet", EPOCHS)
    write_table(trials_frame, report / "trials.parquet", TRIALS)
    completed = trials_frame[trials_frame["status"] == "completed"]
    winner = (completed if len(completed) else trials_frame).sort_values("best_val_acc").iloc[-1]
    write_json({
        "trial_id": winner["trial_id"], "status": winner["status"],
        "config": Config.from_flat({k: winner[k] for k in CONFIG_COLUMNS}).to_flat(),
        "metrics": {"val_acc": winner["best_val_acc"], "val_loss": 0.1, "epoch": MAX_EPOCHS, "epochs_run": MAX_EPOCHS},
    }, report / "best.json")
    write_json({
        "space": space, "budget": "standard", "trials": n, "max_epochs": MAX_EPOCHS, "grace": 1, "eta": 3,
        "concurrency": 8, "cpus_per_trial": 1.0, "gpus_per_trial": 0.25, "seed": 0, "subset": None, "val_size": 6000,
        "started": "2026-11-26T10:00:00+00:00",
    }, folder / "run.json")
    return folder


def write_retrain(folder: Path, source: str, train_images: int, epochs: int, accuracies=(0.931, 0.935)) -> None:
    """winner/ as search.retrain writes it: its tables and a real model.pt with its metadata."""
    from model.export import save_model
    from model.net import build

    cfg = Config(filters=(8, 16), dense=16, epochs=epochs)
    winner = folder / "winner"
    write_table(pd.DataFrame({"seed": list(range(len(accuracies))), "test_acc": list(accuracies),
                              "test_acc_no_mirror": list(accuracies), "test_loss": 0.2,
                              "epochs": epochs, "seconds": 60.0, "params": 1234}), winner / "retrain.parquet", RETRAIN)
    write_table(pd.DataFrame({"class": ["T-shirt/top", "Ankle boot"], "precision": [0.91, 0.97], "recall": [0.9, 0.96],
                              "f1": [0.905, 0.965], "support": [1000, 1000]}), winner / "per_class.parquet", PER_CLASS)
    metadata = {"source": source, "seed": 0, "epochs": epochs, "train_images": train_images, "test_acc": accuracies[0]}
    save_model(winner / "model.pt", cfg, build(cfg).state_dict(), metadata)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    return write_search(tmp_path_factory.mktemp("runs") / "full-standard")


@dataclass(frozen=True)
class Shown:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def show(capsys, monkeypatch):
    """`python -m results.show ARGS` with $COLUMNS (None: unset, as in a log file), in this process."""

    def run(*args: str, columns: int | None = 80) -> Shown:
        if columns:
            monkeypatch.setenv("COLUMNS", str(columns))
        else:
            monkeypatch.delenv("COLUMNS", raising=False)
        code = main(list(args))
        out, err = capsys.readouterr()
        return Shown(code, out, err)

    return run


def render(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def assert_fits(text: str, width: int = 80) -> None:
    wide = [line for line in text.splitlines() if cell_len(line.rstrip()) > width]
    assert not wide, "\n".join(wide)
    assert "…" not in text  # rich's mark for a cut cell


def test_a_full_search_shows_in_80_columns_with_whole_ids_and_numbers(full, show):
    done = show(str(full))
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout)
    exp = load(full)
    top = ranked(exp.trials).head(5)
    rows = [line.split() for line in done.stdout.splitlines()]
    for trial in top.itertuples():
        row = next(r for r in rows if r and r[0] == trial.trial_id)  # the whole id, first in its row
        assert row[1:4] == [trial.status, str(trial.epochs_run), f"{100 * trial.last_val_acc:.2f}%"]
    assert "lr" in rows[next(i for i, r in enumerate(rows) if r[:2] == ["trial", "status"])]  # what matters made it
    assert "more hyperparameters: columns=all, or trial=ID" in done.stdout
    assert "hyperparameters by importance" in done.stdout


def test_in_a_file_the_tables_are_as_wide_as_they_need(full, show):
    done = show(str(full), columns=None)
    assert done.returncode == 0, done.stderr
    header = next(line.split() for line in done.stdout.splitlines() if line.startswith("trial "))
    varying = [name for name in CONFIG_COLUMNS if load(full).trials[name].nunique() > 1]
    assert len(varying) > 20  # space=full: far too many for 80 columns
    assert header[:5] == ["trial", "status", "epochs", "val", "acc"] and sorted(header[5:]) == sorted(varying)
    assert "more hyperparameters" not in done.stdout


def test_columns_all_shows_every_varying_hyperparameter_within_80_columns(full, show):
    done = show(str(full), "columns=all")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout)
    labels = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert {name for name in CONFIG_COLUMNS if load(full).trials[name].nunique() > 1} <= labels
    text = render(all_columns_table(load(full)), width=40)  # too narrow for 5 trials: fewer, and said so
    assert "more trials fit a wider terminal" in text


def test_a_path_longer_than_the_line_is_folded_whole_never_cut(tmp_path, show):
    folder = write_search(tmp_path / ("a-folder-whose-name-alone-is-wider-than-most-terminals-" * 2).rstrip("-"), n=3)
    trial_id = load(folder).trials["trial_id"][0]
    for args in ((), (f"trial={trial_id}",)):
        done = show(str(folder), *args)
        assert done.returncode == 0, done.stderr
        assert_fits(done.stdout)  # no line over 80 columns, no cell cut with "…"
        assert str(folder) in "".join(done.stdout.split())  # every character of it, in order


def test_one_trial_in_full(full, show):
    exp = load(full)
    trial = exp.trials.iloc[3]
    done = show(str(full), f"trial={trial['trial_id']}")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout)
    for name in CONFIG_COLUMNS:
        assert name in done.stdout
    epochs = [line.split() for line in done.stdout.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert [int(row[0]) for row in epochs] == list(range(1, trial["epochs_run"] + 1))
    assert number(trial["lr"]) in done.stdout and repr(trial["lr"]) not in done.stdout  # 3 digits, not 17
    wrong = show(str(full), "trial=nope")
    assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1 and "the top ones:" in wrong.stderr


def test_importance_ranks_the_one_hyperparameter_that_matters_first(full):
    importance = load(full).importance
    assert list(importance.columns) == ["parameter", "importance"]
    assert importance["parameter"].iloc[0] == "lr"
    assert importance["importance"].sum() == pytest.approx(1.0)
    assert importance["importance"].is_monotonic_decreasing
    text = render(importance_table(load(full)))
    assert_fits(text)
    first = next(line.split() for line in text.splitlines() if line.startswith("lr "))
    assert first[0] == "lr" and int(first[1].rstrip("%")) > 20


def test_importance_needs_neither_ray_nor_a_search_space(full):
    code = (
        "import sys, results; imp = results.load(sys.argv[1]).importance; "
        "print(imp['parameter'].iloc[0], sorted(m for m in ('ray', 'spaces') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(full)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lr", "[]"]
    assert done.stderr == ""  # a fresh process, Optuna at its default INFO: no "A new study created in memory"


def test_too_few_finished_trials_have_no_importance(tmp_path):
    exp = load(write_search(tmp_path / "tiny", n=3))
    assert exp.importance.empty
    assert "needs at least 4 completed or pruned trials" in render(importance_table(exp))


def test_a_retrain_on_fewer_images_is_not_set_beside_the_report(tmp_path, show):
    folder = write_search(tmp_path / "quick", space="augmentation")
    write_retrain(folder, "best trial 0a1b2c3d", train_images=2_000, epochs=1)
    done = show(str(folder))
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout)
    flat = " ".join(done.stdout.split())
    assert "best trial 0a1b2c3d, 2 seeds x 1 epoch on 2,000 training images" in flat
    assert "93.30% ± 0.28%" in flat
    assert "not comparable with the report's figures" in flat
    assert "report: with augmentation 92.74%" in flat and not any(
        line.split()[:3] == ["report:", "with", "augmentation"] for line in done.stdout.splitlines()
    )  # named in the caption, not a row of the table


def test_a_retrain_with_the_reports_recipe_stands_beside_it(tmp_path, show):
    folder = write_search(tmp_path / "standard", space="augmentation")
    write_retrain(folder, "best trial 0a1b2c3d", train_images=60_000, epochs=30)
    done = show(str(folder))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["report:", "with", "augmentation", "92.74%"] in rows and ["report:", "baseline", "88.50%"] in rows
    assert "not comparable" not in done.stdout


def test_a_folder_with_only_a_preset_retrain_shows(tmp_path, show):
    folder = tmp_path / "report"
    write_retrain(folder, "preset baseline", train_images=60_000, epochs=30, accuracies=(0.885,))
    done = show(str(folder))
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert "a retrain only, no search" in flat and "preset baseline" in flat
    assert "88.50%" in done.stdout and "Ankle boot" in done.stdout
    exp = load(folder)
    assert not exp.searched and exp.trials.empty and exp.winner["train_images"] == 60_000
    wrong = show(str(folder), "trial=x")
    assert wrong.returncode == 2 and "holds a retrain only" in wrong.stderr


def test_experiments_side_by_side_fit_80_columns(tmp_path, full, show):
    others = [write_search(tmp_path / name, space="augmentation", seed=i) for i, name in
              enumerate(("augmentation-standard-long-name", "augmentation-standard-again"))]
    write_retrain(others[0], "best trial 0a1b2c3d", train_images=60_000, epochs=30)
    done = show(str(full), *map(str, others))
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout)
    for folder in (full, *others):
        assert folder.name in done.stdout
    assert "93.30% ± 0.28%" in done.stdout
    text = render(side_by_side([load(full), *map(load, others)]), width=200)
    assert text.count("experiments side by side") == 1 and all(folder.name in text.splitlines()[1] for folder in others)
    # Each search's device-hours in its own unit (a CPU search's were "GPU-hours 0.00"), and its width.
    cpu = write_search(tmp_path / "on-cpu", space="augmentation", seed=5)
    trials = pd.read_parquet(cpu / "report" / "trials.parquet")
    write_table(trials.assign(gpus_per_trial=0.0, cpus_per_trial=2.0), cpu / "report" / "trials.parquet", TRIALS)
    run = json.loads((cpu / "run.json").read_text())
    (cpu / "run.json").write_text(json.dumps({**run, "width": 0.125}))
    rows = {line.split()[0]: line.split()[1:] for line in render(side_by_side([load(full), load(cpu)]), width=200).splitlines()
            if line.split() and line.split()[0] in ("device-hours", "width")}
    hours = 12.345 * trials["epochs_run"].sum() / 3600
    assert rows["device-hours"][2:] == [f"{2 * hours:.2f}", "CPU"] and rows["device-hours"][1] == "GPU"
    assert rows["width"] == ["1", "0.125"]


def test_bad_arguments_are_one_line_and_exit_2(full, tmp_path, show):
    for args in (["columns=some", str(full)], [str(full), str(full), "trial=x"], [str(full), "colour=red"], []):
        done = show(*args)
        assert done.returncode == 2 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)


def test_a_quoted_tilde_is_the_home_folder(tmp_path, show, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    write_search(tmp_path / "runs" / "x")
    done = show("~/runs/x")
    assert done.returncode == 0 and "best" in done.stdout, done.stderr
    done = show("~nosuchuser9/runs/x")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no user's home folder" in done.stderr


def test_a_search_s_compute_is_counted_in_the_devices_its_trials_held():
    from types import SimpleNamespace

    from results.show import compute_text

    def trials(gpus: float, cpus: float, seconds: float) -> SimpleNamespace:
        return SimpleNamespace(trials=pd.DataFrame({"seconds": [seconds, seconds], "gpus_per_trial": [gpus, gpus],
                                                    "cpus_per_trial": [cpus, cpus]}))

    assert compute_text(trials(0.25, 1.0, 1800.0)) == "1.00 trial-hours, 0.25 GPU-hours"
    # A smoke search on 2 CPU cores: it was "0.00 trial-hours, 0.00 GPU-hours".
    assert compute_text(trials(0.0, 1.0, 6.0)) == "0.0033 trial-hours, 0.0033 CPU-hours"
    assert compute_text(trials(0.0, 2.0, 36.0)) == "0.02 trial-hours, 0.04 CPU-hours"


def test_a_pruned_best_is_at_its_epoch_of_the_search_s_max_epochs_not_of_the_epochs_it_ran():
    from types import SimpleNamespace

    from results.show import best_text

    pruned = SimpleNamespace(run={"max_epochs": 3}, trials=pd.DataFrame({"epochs_run": [2]}), best={
        "trial_id": "t1", "status": "pruned", "metrics": {"val_acc": 0.5, "epoch": 2, "epochs_run": 2}})
    assert best_text(pruned) == "50.00% val acc at epoch 2 of 3, trial t1 (pruned)"  # was "at epoch 2 of 2"


def test_the_top_trials_table_adapts_to_the_width_it_is_printed_at(full):
    exp = load(full)
    narrow, wide = render(top_trials_table(exp), 80), render(top_trials_table(exp), 160)
    columns = [next(line.split() for line in text.splitlines() if line.startswith("trial ")) for text in (narrow, wide)]
    assert len(columns[1]) > len(columns[0]) >= 7
    assert columns[0] == columns[1][: len(columns[0])]  # the same order: the most important first
    best = json.loads((full / "report" / "best.json").read_text())["trial_id"]
    assert best in narrow


def test_the_show_command_a_search_prints_survives_a_shell(tmp_path, capsys, monkeypatch):
    from search.report import print_report

    monkeypatch.delenv("COLUMNS", raising=False)  # as in a log file: no line is wrapped
    location = str(write_search(tmp_path / "my runs" / "full-standard"))
    print_report(location, N_TRIALS, "python -m search.run name=full-standard resume=true", retries=2)
    line = next(line for line in capsys.readouterr().out.splitlines() if "read the tables with" in line)
    assert shlex.split(line.split("read the tables with", 1)[1]) == ["python", "-m", "results.show", location]


def test_the_commands_a_search_prints_are_whole_lines_at_80_columns(tmp_path, capsys, monkeypatch):
    # rich broke them at the console's width: pasted, the first half ran `python -m` alone.
    from search.report import print_report

    monkeypatch.setenv("COLUMNS", "80")
    location = str(write_search(tmp_path / "an-experiment-folder-with-a-rather-long-name"))
    resume = "python -m search.run name=an-experiment-folder-with-a-rather-long-name resume=true"
    assert print_report(location, N_TRIALS + 1, resume, retries=2) == INTERRUPTED
    lines = capsys.readouterr().out.splitlines()
    read = next(line for line in lines if "read the tables with" in line)
    assert shlex.split(read.split("read the tables with", 1)[1]) == ["python", "-m", "results.show", location]
    assert next(line for line in lines if "resume with" in line).split("resume with", 1)[1].strip() == resume


def test_an_unfinished_trial_is_not_counted_among_the_finished(tmp_path, capsys):
    from results.schema import read_table
    from search.report import print_report

    location = write_search(tmp_path / "x")
    trials = read_table(location / "report" / "trials.parquet", TRIALS)
    trials.loc[trials["status"] == "error", "status"] = "unfinished"  # its one errored trial, stopped mid-way
    write_table(trials, location / "report" / "trials.parquet", TRIALS)
    counts = trials["status"].value_counts()
    print_report(str(location), N_TRIALS, "python -m search.run name=x resume=true", retries=2)
    line = next(line for line in capsys.readouterr().out.splitlines() if "read the tables with" in line)
    assert line.startswith(f"{N_TRIALS - 1} of {N_TRIALS} trials finished ({counts['completed']} completed, "
                           f"{counts['pruned']} pruned; 1 more unfinished); "), line  # was "(..., 1 unfinished)"


def test_show_read_by_a_reader_that_stops_reading_exits_0_quietly(full, reader_gone):
    done = reader_gone("results.show", str(full))  # `| head -1`
    assert (done.returncode, done.stderr) == (0, "")


def test_a_damaged_report_table_is_one_line_saying_what_rebuilds_it(tmp_path, show):
    folder = write_search(tmp_path / "damaged", n=4)
    table = folder / "report" / "trials.parquet"
    table.write_bytes(table.read_bytes()[:100])  # cut short, as a full disk leaves a file copied elsewhere
    shown = show(str(folder))
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr.strip() == (f"error: {table} is damaged: not a readable Parquet file; "
                                    f"python -m results.collect {folder} rebuilds the report from Tune's files, unless "
                                    "an older version of this service wrote them")


@pytest.mark.parametrize("table", ["trials", "epochs"])
def test_a_report_table_missing_is_one_line_saying_what_rebuilds_it(tmp_path, show, table):
    # Was a pyarrow FileNotFoundError traceback, exit 1 (a copy or sync cut short), alone or side by side.
    folder = write_search(tmp_path / "partial", n=4)
    (folder / "report" / f"{table}.parquet").unlink()
    for shown in (show(str(folder)), show(str(write_search(tmp_path / "whole", n=2)), str(folder))):
        assert shown.returncode == 2 and shown.stdout == ""
        assert shown.stderr.strip() == (f"error: {folder}: the report has no report/{table}.parquet; python -m "
                                        f"results.collect {folder} rebuilds the report from Tune's files, unless an "
                                        "older version of this service wrote them")


def test_a_replay_and_a_record_say_what_they_are(tmp_path, show):
    # Both read as searches that trained, and a record's budget as one with ASHA's early stopping.
    searched, replayed, recorded = (write_search(tmp_path / name, n=3) for name in ("searched", "replayed", "recorded"))
    for folder, marks in ((replayed, {"replay": "/records/r"}), (recorded, {"made_by": "search.replay.record"})):
        run = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**run, **marks}))
    flat = " ".join(show(str(replayed)).stdout.split())
    assert "replay of /records/r: nothing trained; every epoch recorded or predicted from the record" in flat
    assert "(ASHA grace 1, eta 3)" in flat
    flat = " ".join(show(str(recorded)).stdout.split())
    assert "(no early stopping: a record)" in flat and "ASHA" not in flat and "replay of" not in flat
    shown = show(str(searched), str(replayed), str(recorded), columns=None)
    assert shown.returncode == 0
    assert next(line for line in shown.stdout.splitlines() if line.startswith("budget")).split() == [
        "budget", "standard", "standard", "(replay)", "standard", "(record)"]


def test_a_key_given_with_two_experiments_is_one_line_naming_the_key(tmp_path, show):
    a, b = write_search(tmp_path / "a", n=2), write_search(tmp_path / "b", n=2)
    shown = show(str(a), str(b), "trial=x")
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr.strip() == "error: trial= applies to one experiment; give one folder"


def test_trial_and_columns_all_together_are_one_line(tmp_path, show):
    folder = write_search(tmp_path / "a", n=2)
    shown = show(str(folder), "trial=x", "columns=all")
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr.strip() == "error: trial= and columns=all: give one; trial=ID shows that trial's every hyperparameter"


def test_one_trial_of_one_epoch_is_said_in_the_singular(tmp_path):
    folder = write_search(tmp_path / "one", n=1)
    run = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**run, "trials": 1, "max_epochs": 1}))
    assert "standard: 1 trial of up to 1 epoch (ASHA" in render(summary_table(load(folder)))


@pytest.mark.parametrize("columns", [None, 80], ids=["in a file", "at 80 columns"])
def test_no_line_ends_in_spaces_and_a_narrow_table_keeps_its_title_whole(tmp_path, show, columns):
    folder = write_search(tmp_path / "one", n=1)  # one trial: its columns=all table is narrower than its title
    for args in ((), ("columns=all",), ("trial=" + load(folder).trials["trial_id"][0],)):
        shown = show(str(folder), *args, columns=columns)
        assert shown.returncode == 0, shown.stderr
        assert [line for line in shown.stdout.splitlines() if line != line.rstrip()] == [], args
    assert "one: top 1 trial, every hyperparameter that varies" in show(str(folder), "columns=all").stdout.splitlines()


def test_show_writes_and_names_a_figure_of_the_search(full, show):
    done = show(str(full), columns=None)  # in a file: the line is whole, however long the path
    assert done.returncode == 0, done.stderr
    figure = full / "report" / "search.png"
    assert done.stdout.rstrip().splitlines()[-1] == f"figure: {figure}"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_search_figure_colours_curves_by_outcome_marks_the_rungs_and_ranks_importance(full):
    from matplotlib.colors import to_hex

    from results.figures import STATUS_COLOURS, search_figure

    exp = load(full)
    best_ax, curves_ax, importance_ax = search_figure(exp.trials, exp.epochs, exp.importance, exp.run, "t").axes
    drawn = [line for line in curves_ax.get_lines() if len(line.get_xdata()) and line.get_linestyle() == "-"]
    by_colour = pd.Series([to_hex(line.get_color()) for line in drawn]).value_counts().to_dict()
    assert by_colour == {to_hex(STATUS_COLOURS[s]): n for s, n in exp.status_counts().items()}  # a curve a trial
    rungs = sorted({line.get_xdata()[0] for line in curves_ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())})
    assert rungs == [1, 3]  # grace 1, eta 3, max_epochs 9
    bars = {label.get_text() for label in importance_ax.get_yticklabels()}
    assert bars == set(exp.importance["parameter"]) and importance_ax.patches[-1].get_width() == exp.importance["importance"].max()
    (step,) = best_ax.get_lines()
    assert step.get_ydata()[-1] == pytest.approx(100 * ranked(exp.trials).iloc[0]["last_val_acc"])


def test_device_time_lays_the_trials_end_to_end_and_best_counts_a_trials_latest_epoch():
    from results.figures import device_timeline

    trials = pd.DataFrame({"trial_id": ["b", "a"], "gpus_per_trial": [0.5, 0.0], "cpus_per_trial": [1.0, 2.0]})
    epochs = pd.DataFrame({"trial_id": ["a", "b", "b"], "epoch": [1, 2, 1], "seconds": [1800.0, 3600.0, 3600.0],
                           "val_acc": [0.7, 0.6, 0.8]})
    timeline = device_timeline(trials, epochs)
    # b first (the table's order), its epochs in order at half a GPU; then a at 2 CPUs
    assert timeline["device_hours"].tolist() == [0.5, 1.0, 2.0]
    assert timeline["best_val_acc"].tolist() == [0.8, 0.6, 0.7]  # b's epoch 2 replaces its epoch 1


def test_the_search_figure_of_a_search_where_every_trial_failed_or_one_epoch_ran():
    from results.figures import search_figure

    run = {"max_epochs": 1, "grace": 1, "eta": 3}
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": ["error", "error"], "gpus_per_trial": [0.0, 0.0],
                           "cpus_per_trial": [1.0, 1.0]})
    no_epochs = pd.DataFrame({"trial_id": [], "epoch": [], "seconds": [], "val_acc": []})
    best_ax, _, _ = search_figure(trials, no_epochs, pd.DataFrame(), run, "t").axes  # every trial failed
    assert [t.get_text() for t in best_ax.texts] == ["no trial reported a result"]
    one = pd.DataFrame({"trial_id": ["a"], "epoch": [1], "seconds": [60.0], "val_acc": [0.5]})
    best_ax, curves_ax, _ = search_figure(trials.assign(status="completed"), one, pd.DataFrame(), run, "t").axes
    (step,) = best_ax.get_lines()
    assert step.get_marker() == "o"  # a single epoch in all is a point, not an empty step
    ticks = [tick for tick in curves_ax.get_xticks() if curves_ax.get_xlim()[0] <= tick <= curves_ax.get_xlim()[1]]
    assert ticks == [1.0]  # not 0.96 ... 1.04


@pytest.mark.parametrize("content, message", [
    ([1], "expected the JSON object search.run writes, found list"),
    ({}, "expected the JSON object search.run writes, found an empty one"),  # was 'a retrain only', exit 0
    ({"space": 5}, "space=5 is not what search.run writes there"),
    ("drop:max_epochs", "lacks max_epochs: not a run.json written by search.run"),
    ("set:subset=all", "subset='all' is not what search.run writes there"),
], ids=["a-list", "an-empty-object", "a-number-for-space", "a-key-missing", "text-for-subset"])
def test_a_run_json_edited_by_hand_is_one_line_not_a_traceback(tmp_path, show, content, message):
    folder = write_search(tmp_path / "edited", n=4)
    run = json.loads((folder / "run.json").read_text())
    if content == "drop:max_epochs":
        del run["max_epochs"]
    elif content == "set:subset=all":
        run["subset"] = "all"
    else:
        run = content
    (folder / "run.json").write_text(json.dumps(run))
    shown = show(str(folder))
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr == f"error: {folder / 'run.json'}: {message}\n" or (
        "lacks" in message and shown.stderr == f"error: {folder / 'run.json'} {message}\n"), shown.stderr


def test_while_no_trial_has_ended_the_best_says_so_and_the_furthest_trial_comes_first(tmp_path, show):
    folder = write_search(tmp_path / "stopped", n=3)  # a search stopped while its trials ran
    trials = pd.read_parquet(folder / "report" / "trials.parquet")
    trials = trials.assign(status="unfinished", epochs_run=[1, 3, 2], last_val_acc=[0.9, 0.8, 0.7])
    write_table(trials, folder / "report" / "trials.parquet", TRIALS)
    write_json(None, folder / "report" / "best.json")
    shown = show(str(folder))
    assert shown.returncode == 0, shown.stderr
    assert "best        no trial has ended with a result yet" in shown.stdout  # not "no trial reported a result"
    places = [shown.stdout.index(trial_id) for trial_id in trials["trial_id"]]
    assert places[1] < places[2] < places[0]  # 3 epochs, 2, 1: the furthest first, not by trial id


def test_a_trial_that_reported_no_epoch_shows_dashes_not_nan(tmp_path, show):
    folder = write_search(tmp_path / "started", n=3)
    trials = pd.read_parquet(folder / "report" / "trials.parquet")
    trials.loc[0, ["status", "epochs_run", "seconds", "images_per_second", "node"]] = ["unfinished", 0, 0.0, None, None]
    write_table(trials, folder / "report" / "trials.parquet", TRIALS)
    shown = show(str(folder), f"trial={trials['trial_id'][0]}")
    assert shown.returncode == 0, shown.stderr
    assert "0 s, - images/s, on -" in shown.stdout and "nan" not in shown.stdout


def test_a_two_objective_search_stopped_before_any_epoch_has_no_front_and_no_figure_of_nothing(tmp_path, show):
    # It exited 2 with matplotlib's "Data cannot be log-scaled", after printing an empty front that
    # called its first row the best and offered a retrain.
    folder = write_search(tmp_path / "two", n=3)
    run = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**run, "objective": "val_acc,params"}))
    trials = pd.read_parquet(folder / "report" / "trials.parquet")
    nothing = {"status": "unfinished", "epochs_run": 0, "seconds": 0.0, "params": None, "best_val_acc": None,
               "last_val_acc": None, "best_val_loss": None, "last_val_loss": None}
    write_table(trials.assign(**nothing), folder / "report" / "trials.parquet", TRIALS)
    write_table(empty_frame(EPOCHS), folder / "report" / "epochs.parquet", EPOCHS)
    write_json(None, folder / "report" / "best.json")
    shown = show(str(folder))
    assert shown.returncode == 0, shown.stderr
    assert "two: no Pareto front yet: no trial has completed" in shown.stdout
    assert "retrain any" not in shown.stdout and "the first is the best" not in shown.stdout
    assert "Pareto front figure: not drawn, as no trial has reported an epoch" in shown.stdout
    assert not (folder / "report" / "pareto.png").exists()
