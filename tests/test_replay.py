"""Recording learning curves (search.replay.record) and replaying searches on them (search.replay.surrogate,
benchmarks/search_efficiency.py): a tiny real record, real Ray Tune, Optuna and Parquet."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray import tune

from model.config import Config, preset
from results.collect import collect
from results.load import load
from results.schema import EPOCHS, TRIALS, write_json, write_table
from search import run
from search.replay import records
from search.replay.record import RecordedConfigs, main as record_main
from search.replay.surrogate import CURVE_KEYS, Surrogate, relevance, replay_marks, replay_trainable
from search.settings import RUN_FILE
from search.strategy.asha import make_scheduler
from search.strategy import study, warm
from search.strategy.searcher import HonestOptunaSearch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
# The CPU record's space and width on 600 images, 2 epochs: tiny networks (at most filters 8,16, dense 32),
# one at a time (their training costs less than starting a second process for them).
TINY = ["space=full", "width=0.0625", "configs=6", "repeats=2", "max_epochs=2", "subset=600", "val_size=300",
        "concurrency=1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, fmnist_dir) -> Path:
    storage = tmp_path_factory.mktemp("records")
    done = subprocess.run(
        [sys.executable, "-m", "search.replay.record", *TINY, f"storage={storage}", "name=tiny", f"data_dir={fmnist_dir}"],
        env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / "tiny"


def test_a_record_says_what_made_it(tiny):
    meta = json.loads((tiny / "record.json").read_text())
    described = (meta["space"], meta["width"], meta["max_epochs"], meta["subset"], meta["val_size"])
    assert described == ("full", 0.0625, 2, 600, 300)
    assert meta["device"] == "cpu" and meta["machines"][0]["hostname"] and meta["machines"][0]["cpu"]
    assert meta["trials"] == {"completed": 8} and meta["params"]["filters"]["choice"][0] == "2,4"  # 32,64 / 16
    record = records.load(str(tiny))
    assert len(record.trials) == 8 and (record.epochs.groupby("trial_id").size() == 2).all()
    # The first two configurations again with the next weight seed: 6 distinct configurations.
    surrogate = Surrogate(record)
    assert len(surrogate.points) == 6 and surrogate.noise.shape == (2, len(CURVE_KEYS), 2)
    assert sorted(record.trials["seed"]) == [0] * 6 + [1] * 2


@pytest.mark.parametrize("args, said", [(["configs=3", "trials=5"], "give configs=N"),
                                        (["configs=3", "grace=1"], "stops nothing early"),
                                        (["configs=0"], "at least 1"),
                                        ([], "configs= is missing: give how many"),  # was "configs=0: must be at least 1"
                                        (["configs=2", "repeats=3"], "repeats=3 exceeds configs=2"),
                                        # keys that steer a search, which a record would have ignored
                                        (["configs=3", "max_params=1000"], "draws from the whole space"),
                                        (["configs=3", "objective=val_acc,params"], "keeps every metric"),
                                        (["configs=3", "gpu_hours=0.1"], "every configuration to max_epochs"),
                                        (["configs=3", "warm_start=runs/x"], "configurations at random")])
def test_record_refuses_bad_input_in_one_line(args, said, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert record_main(["space=full", *args]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_record_has_no_device_budget_so_a_cpu_record_of_a_gpu_budget_needs_no_gpu_hours(tmp_path):
    from search.replay.record import parse

    # budget=standard gives gpu_hours=0.09, which search.run refuses for trials without a GPU; a
    # record trains every configuration to max_epochs and refuses gpu_hours= itself.
    recorded = parse(["space=full", "budget=standard", "gpus_per_trial=0", "configs=3", f"storage={tmp_path}"])
    assert (recorded.run.gpu_hours, recorded.run.cpu_hours, recorded.run.gpus_per_trial) == (None, None, 0.0)


@pytest.mark.parametrize("space", ["full", "augmentation", "seed"])
def test_width_narrows_every_network_a_record_trains_whether_or_not_its_space_varies_the_channels(space):
    from search.replay.record import draw, parse

    base = preset("seed")
    narrow = draw(parse([f"space={space}", "width=0.125", "configs=20"]))
    full = draw(parse([f"space={space}", "configs=20"]))
    for n, f in zip(narrow, full):
        assert [round(int(c) * 0.125) for c in f["filters"].split(",")] == [int(c) for c in n["filters"].split(",")]
        assert n["dense"] == round(f["dense"] * 0.125)
    if space != "full":  # the preset's channels, which the space leaves as they are
        assert {f["filters"] for f in full} == {base.to_flat()["filters"]} and {n["filters"] for n in narrow} == {"8,16"}


def test_a_record_is_neither_made_again_nor_resumed(tiny, tmp_path, capsys):
    # Its own name again: not "add resume=true" (a record has no resume=), and nothing touched.
    before = sorted(p.name for p in tiny.iterdir())
    assert record_main(["space=full", "configs=2", f"storage={tiny.parent}", "name=tiny"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tiny} exists, and a record is made in one go (it cannot be resumed): give another name=\n"
    # search.run cannot resume it: before, it trained the rest and crashed at its end (no device spend).
    # A record killed before its end has no record.json: run.json's mark says what it is.
    killed = tmp_path / "killed"
    shutil.copytree(tiny, killed)
    (killed / "record.json").unlink()
    for folder in (tiny, killed):
        assert run.main([f"storage={folder.parent}", f"name={folder.name}", "resume=true"]) == 2
        err = capsys.readouterr().err
        assert err == (f"error: {folder} is a record (python -m search.replay.record), not a search: a record cannot be "
                       f"resumed; replay it with replay={folder}\n")
    assert sorted(p.name for p in tiny.iterdir()) == before


def test_a_record_folder_missing_a_part_is_one_line_naming_it(tiny, tmp_path, capsys):
    # Each was a traceback (FileNotFoundError, KeyError), exit 1.
    def broken(name: str, change) -> Path:
        folder = tmp_path / name
        shutil.copytree(tiny, folder)
        change(folder)
        return folder

    cases = {
        broken("no-report", lambda f: shutil.rmtree(f / "report")): "report/trials.parquet does not exist: not a whole record",
        broken("a-list", lambda f: (f / "record.json").write_text("[]")): "lacks everything: it is not a JSON object",
        broken("empty", lambda f: (f / "record.json").write_text("{}")): "lacks space, width, params, max_epochs",
        broken("no-epochs", lambda f: (f / "record.json").write_text(json.dumps(
            {k: v for k, v in json.loads((tiny / "record.json").read_text()).items() if k != "max_epochs"}))):
            "record.json lacks max_epochs: not a record.json written by python -m search.replay.record",
    }
    for folder, said in cases.items():
        assert run.main(["space=full", f"replay={folder}", "trials=2", f"storage={tmp_path / 'runs'}"]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_the_record_command_as_typed_refuses_in_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "search.replay.record", "space=full", "configs=0"],
                          env=ENV, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "at least 1" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# --- the surrogate, on a made-up record of two configurations -----------------------------------
AUGMENTATION = {  # spaces/augmentation.py as it was when these tests were written: a record keeps its space
    "strength": tune.uniform(0.0, 1.0), "rotation": tune.uniform(0.0, 30.0), "shift": tune.uniform(0.0, 0.2),
    "shear": tune.uniform(0.0, 20.0), "zoom": tune.uniform(0.0, 0.2), "flip": tune.uniform(0.0, 1.0),
    "erasing": tune.uniform(0.0, 0.5), "lr": tune.loguniform(1e-4, 3e-3),
}
A = {"strength": 0.2, "rotation": 10.0, "shift": 0.05, "shear": 4.0, "zoom": 0.02, "flip": 0.1, "erasing": 0.1,
     "lr": 1e-4}
B = {"strength": 0.8, "rotation": 20.0, "shift": 0.15, "shear": 16.0, "zoom": 0.18, "flip": 0.9, "erasing": 0.4,
     "lr": 1e-3}


def _curve(level: float, lr: float, seconds: float) -> dict[str, list[float]]:
    return {"train_loss": [2 - level, 1.5 - level], "train_acc": [level - 0.1, level],
            "val_loss": [1.2 - level, 1 - level],
            "val_acc": [level - 0.05, level], "lr": [lr, lr / 2], "seconds": [seconds, seconds + 1],
            "images_per_second": [1000 / seconds, 1000 / (seconds + 1)]}


def _made_up_record(folder: Path, runs: list[tuple[dict, int, dict]], space: dict = AUGMENTATION) -> Path:
    """A record of the augmentation space (or `space`): (config values, weight seed, curve) per trial."""
    trials, epochs = [], []
    for i, (values, seed, curve) in enumerate(runs):
        config = Config.from_flat({**preset("seed").to_flat(), **values, "epochs": 2, "seed": seed}).to_flat()
        trial_id = f"t{i}"
        trials.append({"trial_id": trial_id, "status": "completed", "epochs_run": 2,
                       "best_val_acc": max(curve["val_acc"]),
                       "last_val_acc": curve["val_acc"][-1], "best_val_loss": min(curve["val_loss"]),
                       "last_val_loss": curve["val_loss"][-1], "params": 786_890, "seconds": sum(curve["seconds"]),
                       "images_per_second": 500.0, "node": "made-up", "cpus_per_trial": 1.0, "gpus_per_trial": 0.0,
                       **config})
        epochs.append(pd.DataFrame({"trial_id": trial_id, "epoch": [1, 2], **curve, "node": "made-up"}))
    frame = pd.DataFrame(trials)
    write_table(frame[[c for c in TRIALS.names]], folder / "report" / "trials.parquet", TRIALS)
    write_table(pd.concat(epochs)[EPOCHS.names], folder / "report" / "epochs.parquet", EPOCHS)
    write_json({"space": "augmentation", "width": 1.0, "params": records.params_to_json(space), "max_epochs": 2,
                "subset": 600, "val_size": 300, "device": "cpu", "cpus_per_trial": 1, "gpus_per_trial": 0},
               folder / "record.json")
    return folder


def _between(t: float) -> dict:
    """The point a fraction t of the way from A to B in the surrogate's scaled space (lr is log-uniform)."""
    point = {k: A[k] + t * (B[k] - A[k]) for k in A}
    point["lr"] = math.exp(math.log(A["lr"]) + t * (math.log(B["lr"]) - math.log(A["lr"])))
    return point


def test_surrogate_interpolates_between_two_recorded_neighbours(tmp_path):
    curve_a, curve_b = _curve(0.6, A["lr"], 2.0), _curve(0.8, B["lr"], 4.0)
    surrogate = Surrogate(records.load(str(_made_up_record(tmp_path, [(A, 0, curve_a), (B, 0, curve_b)]))))
    for t in (0.25, 0.5, 0.9):
        guess = surrogate.predict(_between(t))
        for key in CURVE_KEYS:  # weights 1/distance: (1 - t) for A, t for B, the straight line
            expected = np.array(curve_a[key]) + t * (np.array(curve_b[key]) - np.array(curve_a[key]))
            if key == "lr":  # the neighbours' schedules (lr / peak lr) times this configuration's peak lr
                expected = _between(t)["lr"] * np.array([1.0, 0.5])
            assert np.allclose(guess[key], expected), (t, key, guess[key], expected)
        answer = surrogate.answer(_between(t), seed=0)  # no repeated configuration: no noise
        assert answer.source == "predicted" and answer.params is None
        assert all(np.allclose(answer.curves[k], guess[k]) for k in CURVE_KEYS)
    recorded = surrogate.answer(dict(B), seed=0)
    assert recorded.source == "recorded" and recorded.params == 786_890
    assert all(list(recorded.curves[k]) == curve_b[k] for k in CURVE_KEYS)


def test_the_keys_that_rank_the_record_choose_the_neighbours(tmp_path):
    # lr ranks the four final accuracies; rotation (30, 0, 0, 30) does not rank them at all (rho 0).
    # With every key weighted alike, rotation=30 would pull the prediction at the second lr towards
    # the high fourth curve (about 0.59); weighted by relevance, rotation counts for nothing there.
    levels, rotations = (0.5, 0.52, 0.54, 0.85), (30.0, 0.0, 0.0, 30.0)
    lrs = [math.exp(math.log(1e-4) + i / 3 * (math.log(3e-3) - math.log(1e-4))) for i in range(4)]
    runs = [({**A, "lr": lr, "rotation": rotation}, 0, _curve(level, lr, 2.0))
            for lr, rotation, level in zip(lrs, rotations, levels)]
    surrogate = Surrogate(records.load(str(_made_up_record(tmp_path, runs))))
    assert surrogate.relevance["lr"] == pytest.approx(1.0) and surrogate.relevance["rotation"] == pytest.approx(0.0)
    assert all(v == 0.0 for k, v in surrogate.relevance.items() if k not in ("lr", "rotation"))  # never varied
    for rotation in (0.0, 15.0, 30.0):
        guess = surrogate.predict({**A, "lr": lrs[1] * 1.000001, "rotation": rotation})
        assert np.allclose(guess["val_acc"], runs[1][2]["val_acc"], atol=1e-4), (rotation, guess["val_acc"])


def test_relevance_of_unordered_categories_and_of_a_record_that_ranks_nothing():
    one_hot = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)  # a schedule that sorts the finals
    cube = np.hstack([one_hot, np.array([[0.2], [0.2], [0.2], [0.2]]), np.array([[0.1], [0.9], [0.9], [0.1]])])
    columns = ["schedule", "schedule", "flip", "lr"]
    weights = relevance(cube, columns, np.array([0.50, 0.51, 0.80, 0.81]))
    # between-group share of the ranks' spread: (2 x 1^2 + 2 x 1^2) / (1.5^2 + 0.5^2 + 0.5^2 + 1.5^2) = 0.8
    assert weights["schedule"] == pytest.approx(math.sqrt(0.8)) and weights["flip"] == 0.0
    assert weights["lr"] == pytest.approx(0.0)
    assert relevance(cube, columns, np.full(4, 0.7)) == {"schedule": 1.0, "flip": 1.0, "lr": 1.0}


def test_predictions_carry_recorded_seed_to_seed_noise(tmp_path):
    a0, a1, b = _curve(0.6, A["lr"], 2.0), _curve(0.64, A["lr"], 2.5), _curve(0.8, B["lr"], 4.0)
    surrogate = Surrogate(records.load(str(_made_up_record(tmp_path, [(A, 0, a0), (A, 1, a1), (B, 0, b)]))))
    noise = {k: (np.array(a0[k]) - np.array(a1[k])) / math.sqrt(2) for k in CURVE_KEYS}
    signs = set()
    for seed in range(12):
        answer, guess = surrogate.answer(_between(0.5), seed), surrogate.predict(_between(0.5))
        sign = np.sign((answer.curves["val_acc"] - guess["val_acc"])[0] / noise["val_acc"][0])
        signs.add(sign)
        for key in CURVE_KEYS:  # losses and accuracies get the noise, time and lr none
            expected = sign * noise[key] if key in ("train_loss", "train_acc", "val_loss", "val_acc") else 0
            assert np.allclose(answer.curves[key] - guess[key], expected), key
        assert np.array_equal(surrogate.answer(_between(0.5), seed).curves["val_acc"], answer.curves["val_acc"])
    assert signs == {-1.0, 1.0}
    # A recorded configuration with two seeds: one of its recorded curves, as recorded.
    answers = {tuple(surrogate.answer(dict(A), seed).curves["val_acc"]) for seed in range(12)}
    assert answers == {tuple(a0["val_acc"]), tuple(a1["val_acc"])}


def test_a_prediction_takes_its_shape_from_curves_of_its_own_schedule(tmp_path):
    # A constant-rate curve that is nearly done after one epoch, a one-cycle curve that rises late.
    space = {**AUGMENTATION, "schedule": tune.choice(["constant", "onecycle"])}
    flat = {**_curve(0.72, A["lr"], 2.0), "val_acc": [0.70, 0.72], "lr": [A["lr"], A["lr"]]}
    late = {**_curve(0.60, B["lr"], 4.0), "val_acc": [0.30, 0.60], "lr": [B["lr"] / 25, B["lr"] / 1e4]}
    surrogate = Surrogate(records.load(str(_made_up_record(
        tmp_path, [({**A, "schedule": "constant"}, 0, flat), ({**B, "schedule": "onecycle"}, 0, late)], space))))
    for values, schedule, shape, peak in ((B, "constant", flat, A["lr"]), (A, "onecycle", late, B["lr"])):
        # next to the recorded curve of the other schedule, the only one of its own schedule far away
        guess = surrogate.predict({**values, "schedule": schedule})
        # each epoch relative to the last as recorded (the losses too, as far as the record's range lets them)
        assert np.allclose(guess["val_acc"] / guess["val_acc"][-1], np.array(shape["val_acc"]) / shape["val_acc"][-1])
        assert np.allclose(guess["lr"] / values["lr"], np.array(shape["lr"]) / peak)  # that schedule's lr / its peak
    # The level (the last epoch) is the nearest configurations' whatever their schedule: B's
    # configuration is 1 from B (another schedule) and farther from A.
    at_b = surrogate.predict({**B, "schedule": "constant"})["val_acc"][-1]
    assert 0.60 < at_b < 0.66


def test_noise_never_carries_a_prediction_past_the_records_range(tmp_path):
    # Two seeds of A that differ widely: a noise draw of +-0.21 on a prediction of about 0.72.
    a0, a1, b = _curve(0.5, A["lr"], 2.0), _curve(0.8, A["lr"], 2.0), _curve(0.85, B["lr"], 4.0)
    surrogate = Surrogate(records.load(str(_made_up_record(tmp_path, [(A, 0, a0), (A, 1, a1), (B, 0, b)]))))
    low = {k: np.minimum.reduce([np.array(c[k]) for c in (a0, a1, b)]) for k in CURVE_KEYS}
    high = {k: np.maximum.reduce([np.array(c[k]) for c in (a0, a1, b)]) for k in CURVE_KEYS}
    finals = set()
    for seed in range(40):
        answer = surrogate.answer(_between(0.9), seed)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert (answer.curves[key] >= low[key] - 1e-12).all() and (answer.curves[key] <= high[key] + 1e-12).all()
        finals.add(round(float(answer.curves["val_acc"][-1]), 6))
    assert 0.85 in finals and min(finals) < 0.7  # held at the best recorded value; the noise still spreads it


def test_on_the_committed_record_no_answer_beats_its_best_curve():
    record = records.load(str(ROOT / "benchmarks" / "records" / "full-cpu-12ep-2026-11-26"))
    surrogate = Surrogate(record)
    runs = np.stack([r for rs in surrogate.runs.values() for r in rs])  # [run, key, epoch]
    val_acc = CURVE_KEYS.index("val_acc")
    rng = np.random.default_rng(0)
    from search.settings import draw_config

    best = 0.0
    for seed in range(300):
        answer = surrogate.answer(draw_config(record.param_space(), rng), seed)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            i = CURVE_KEYS.index(key)
            assert (runs[:, i].min(axis=0) <= answer.curves[key]).all() and (answer.curves[key] <= runs[:, i].max(axis=0)).all()
        best = max(best, float(answer.curves["val_acc"][-1]))
    assert best <= runs[:, val_acc, -1].max()


# --- replayed searches on the tiny record, through Ray Tune -----------------------------------
def _search(record, surrogate, storage: Path, name: str, search_alg, scheduler, seed: int, trials: int,
            param_space: dict | None = None) -> Path:
    """A replayed search built as the service builds every search (search.engine.build_tuner), with
    the given searcher and scheduler; run.json marked as a replay, as search.run writes it."""
    from search import engine

    s = run.parse(["space=full", f"replay={','.join(record.paths)}", f"trials={trials}", "grace=1", "eta=2",
                   "concurrency=1", f"seed={seed}", f"name={name}", f"storage={storage}"])
    write_json({**s.recorded(), **replay_marks(record, 0.01)}, f"{s.experiment}/{RUN_FILE}")
    tuner = engine.build_tuner(
        s, replay_trainable(surrogate, seed, 0.01), search_alg=search_alg, scheduler=scheduler, callbacks=[],
        param_space=record.param_space() if param_space is None else param_space,
        # Ended by Tune at the last epoch: Tune reuses the actor of a trial it stopped, not of one that returned.
        stop={"training_iteration": record.max_epochs},
    )
    engine.fit(tuner)
    collect(storage / name)
    return storage / name


@pytest.fixture(scope="module")
def replayed(tiny, tmp_path_factory) -> dict[str, Path]:
    """Four replayed searches in one Ray session: the record's own configurations, and TPE + ASHA
    with seed 3 twice and seed 4 once (one trial at a time: then the order of results is fixed)."""
    from search.runtime.ray_session import ray_session

    record = records.load(str(tiny))
    surrogate = Surrogate(record)
    storage = tmp_path_factory.mktemp("replays")
    searches = {}
    with ray_session():
        recorded = [{k: row[k] for k in record.param_space()} for row in record.trials.to_dict("records")]
        searches["recorded"] = _search(record, surrogate, storage, "recorded", RecordedConfigs(recorded), None, 0,
                                       len(recorded), param_space={})
        for name, seed in (("tpe-3", 3), ("tpe-3-again", 3), ("tpe-4", 4)):
            fixed = {k: v for k, v in record.param_space().items() if k not in records.searched(record.params())}
            searcher = HonestOptunaSearch(max_epochs=2, seed=seed, base=fixed)
            searches[name] = _search(record, surrogate, storage, name, searcher, make_scheduler(2, 1, 2), seed,
                                     trials=12)
    return searches


def _curves(experiment: Path, record: Path) -> dict[tuple, list[tuple]]:
    """{searched values: [its epochs' reported values, ...]} of an experiment's report."""
    exp = load(experiment)
    keys = sorted(records.searched(records.load(str(record)).params()))
    out = {}
    for row in exp.trials.to_dict("records"):
        history = exp.epochs[exp.epochs["trial_id"] == row["trial_id"]].sort_values("epoch")
        out.setdefault(tuple(row[k] for k in keys), []).append(tuple(map(tuple, history[list(CURVE_KEYS)].to_numpy())))
    return out


def test_a_recorded_configuration_replays_its_recorded_curve_exactly(tiny, replayed):
    recorded, replayed_curves = _curves(tiny, tiny), _curves(replayed["recorded"], tiny)
    assert set(replayed_curves) == set(recorded) and len(recorded) == 6
    for config, curves in replayed_curves.items():
        for curve in curves:
            assert curve in recorded[config]  # bit for bit, one of its seeds when it has two
    exp = load(replayed["recorded"])
    assert set(exp.trials["node"]) == {"replay:recorded"} and set(exp.trials["status"]) == {"completed"}
    assert exp.run["replay"] == str(tiny) and exp.run["replay_device"] == "cpu"


def test_a_replayed_search_is_deterministic_for_a_given_seed(tiny, replayed):
    first, again, other = (_curves(replayed[name], tiny) for name in ("tpe-3", "tpe-3-again", "tpe-4"))
    assert first == again and len(first) == 12  # the same configurations, each with the same epochs
    assert set(first) != set(other)  # another seed, another search
    outcomes = [dict(zip(load(replayed[name]).trials["lr"], load(replayed[name]).trials["status"]))
                for name in ("tpe-3", "tpe-3-again")]
    assert outcomes[0] == outcomes[1] and "pruned" in outcomes[0].values()  # ASHA stopped the same trials
    assert (load(replayed["tpe-3"]).trials["node"] == "replay:predicted").any()


def test_simulated_time_adds_up(tiny, replayed):
    record = records.load(str(tiny))
    surrogate = Surrogate(record)
    exp = load(replayed["tpe-3"])
    assert math.isclose(exp.trials["seconds"].sum(), exp.epochs["seconds"].sum())
    for row in exp.trials.to_dict("records"):
        answer = surrogate.answer(row, seed=3)
        history = exp.epochs[exp.epochs["trial_id"] == row["trial_id"]]
        assert np.allclose(history["seconds"], answer.curves["seconds"][: row["epochs_run"]])
        assert math.isclose(row["seconds"], answer.curves["seconds"][: row["epochs_run"]].sum())


def test_the_comparison_runs_end_to_end(tiny, tmp_path):
    # Its speed is the benchmark's to report, not a timed test's.
    png = tmp_path / "curves.png"
    done = subprocess.run(
        [sys.executable, "benchmarks/search_efficiency.py", f"--record={tiny}", "--seeds=2", "--trials=4",
         "--concurrency=2", "--jobs=1", f"--png={png}"],
        env=ENV, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("TPE + ASHA (ours)", "stock OptunaSearch + ASHA", "random + ASHA", "random + FIFO", "TPE + FIFO"):
        assert f"| {label} |" in done.stdout
    assert "ours - stock" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _replay_search(*keys: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.run", "space=full", "concurrency=2", "grace=1", "eta=2", *keys],
                          env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def replayed_search(tiny, tmp_path_factory) -> Path:
    storage = tmp_path_factory.mktemp("replayed")
    done = _replay_search(f"replay={tiny}", "trials=6", f"storage={storage}", "name=replayed")
    assert done.returncode == 0, done.stderr[-3000:]
    return storage / "replayed"


def test_search_run_replays_a_record(tiny, replayed_search, tmp_path):
    exp = load(replayed_search)
    # The record's schedule length, data and width, without being given; marked as a replay of a CPU record.
    assert (exp.run["max_epochs"], exp.run["subset"], exp.run["val_size"], exp.run["width"]) == (2, 600, 300, 0.0625)
    assert exp.run["replay"] == str(tiny) and exp.run["replay_device"] == "cpu"
    assert len(exp.trials) == 6 and set(exp.trials["node"]) <= {"replay:recorded", "replay:predicted"}
    assert math.isclose(exp.trials["seconds"].sum(), exp.epochs["seconds"].sum())
    # A space other than the record's is refused before anything is written.
    refused = subprocess.run(
        [sys.executable, "-m", "search.run", "space=augmentation", f"replay={tiny}", f"storage={tmp_path}",
         "name=refused"], env=ENV, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert refused.returncode == 2 and "the record holds space=full" in refused.stderr
    assert not (tmp_path / "refused").exists()
    # So is another width: the record's curves are those of its own networks.
    with pytest.raises(ValueError, match=r"width=0.5 but the record's curves have width=0.0625"):
        run.parse(["space=full", f"replay={tiny}", "width=0.5", f"storage={tmp_path}", "name=refused"])


def test_a_replay_keeps_its_records_resolved_so_a_resume_from_elsewhere_finds_them(tiny, replayed_search, tmp_path,
                                                                                   monkeypatch):
    # A relative replay= was kept as typed: the resume, run from another folder, could not find it,
    # and the same record spelled ./REC/ was refused as differing.
    monkeypatch.chdir(tiny.parent)
    fresh = run.parse(["space=full", f"replay=./{tiny.name}/", f"storage={tmp_path}", "name=fresh"])
    assert fresh.replay == str(tiny)
    resumed = run.parse(["name=replayed", f"storage={replayed_search.parent}", "resume=true", f"replay={tiny.name}"])
    assert resumed.replay == str(tiny)


def test_a_search_warm_started_from_an_earlier_one_hands_tpe_its_trials(tiny, replayed_search, tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(replayed_search, old)
    trials = load(old).trials
    first = trials["trial_id"].min()
    trials.loc[trials["trial_id"] == first, "lr"] = 0.5  # far above the space's range
    write_table(trials[TRIALS.names], old / "report" / "trials.parquet", TRIALS)  # results.load adds latency columns
    kept = trials[(trials["trial_id"] != first) & trials["status"].isin(["completed", "pruned"])]
    finished, completed = len(kept) + 1, int((kept["status"] == "completed").sum())

    done = _replay_search(f"replay={tiny}", "trials=2", f"warm_start={old}", f"storage={tmp_path}", "name=new")
    assert done.returncode == 0, done.stderr[-3000:]
    notes = [line for line in done.stderr.splitlines() if line.startswith("warm start from")]
    assert notes == [f"warm start from {old}: {len(kept)} finished trials ({completed} completed, {len(kept) - completed} "
                     f"pruned or of another schedule length); 1 left out, outside this space (first: {first}: lr=0.5)"], done.stderr
    assert load(tmp_path / "new").run["warm_start"] == str(old)
    told = study.load(tmp_path / "new").trials
    warm_trials = [t for t in told if t.user_attrs.get(warm.SOURCE_ATTR) == str(old)]
    assert len(warm_trials) == finished - 1 and len(told) == finished - 1 + 2
    # Fewer warm trials than TPE's start-up: the new ones are random draws, but not the source's own
    # (both searches have seed 0; TPE's stream was the same, and repeated the source's first draws).
    assert not set(load(tmp_path / "new").trials["lr"]) & set(load(old).trials["lr"])
    # A resume keeps the warm start: another one is refused, the recorded one accepted.
    again = _replay_search(f"replay={tiny}", "trials=2", f"warm_start={replayed_search}", f"storage={tmp_path}",
                           "name=new", "resume=true")
    assert again.returncode == 2 and f"warm_start={replayed_search} differs from warm_start={old}" in again.stderr
    # The recorded folder spelled another way is the same folder (it was refused as differing).
    monkeypatch.chdir(tmp_path)
    assert run.parse(["name=new", "storage=.", "resume=true", "warm_start=./old/"]).warm_start == str(old)
    # Another space's search is no source: refused in one line, nothing written.
    refused = subprocess.run(
        [sys.executable, "-m", "search.run", "space=augmentation", f"warm_start={old}", f"storage={tmp_path}",
         "name=refused"], env=ENV, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "a search of space=full, not space=augmentation" in refused.stderr
    assert not (tmp_path / "refused").exists()
