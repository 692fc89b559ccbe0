"""Several objectives: objective=val_acc,params (or latency_ms), MO-ASHA's rungs, Optuna's
multi-objective TPE told the truth, the Pareto front in the tables, the view and the report.

Made-up values and learning curves; the two real searches replay a made-up record (real local Ray
and Optuna, no training): one to its end, one killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from model import latency
from model.config import Config, preset
from model.net import build, parameters_of
from results import pareto
from results.load import load
from results.schema import EPOCHS, TRIALS, TRIALS_WITH_LATENCY, read_table, write_json, write_table
from search import run
from search.replay import records
from search.strategy import study
from search.strategy.asha import RungKeeper, make_scheduler, rungs
from search.strategy.searcher import REFUSED_ATTR, STOPPED_ATTR, HonestOptunaSearch, TPEWithRefusals
from conftest import patched_on_import, wait_until, wait_until_held_and_snapshotted, with_site

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE
TWO = ("val_acc", "params")


# --- results.pareto ---------------------------------------------------------------------------------
def test_ranks_crowding_and_order():
    g = pareto.gains([[0.80, 1000], [0.70, 2000], [0.60, 500], [0.75, 800], [0.80, 1000]], TWO)
    assert list(pareto.ranks(g)) == [0, 1, 0, 0, 0]  # equal points do not beat each other
    assert list(pareto.order(g)) == [0, 4, 2, 3, 1]  # the ends of rank 0 first (accuracy, then the earlier), then 3
    assert pareto.hypervolume(pareto.gains([[0.8, 2]], TWO), np.array([0.0, -4.0])) == pytest.approx(0.8 * 2)
    two_steps = pareto.gains([[0.8, 3], [0.5, 1], [0.4, 2]], TWO)  # the third is beaten: it adds nothing
    assert pareto.hypervolume(two_steps, np.array([0.0, -4.0])) == pytest.approx(0.8 * 1 + 0.5 * 2)


def test_objective_values_are_checked_naming_the_choices():
    assert pareto.names("val_acc,latency_ms") == ("val_acc", "latency_ms")
    with pytest.raises(ValueError, match=r"^objective='params,val_acc': choose one of val_acc \| val_acc,params \| "):
        pareto.names("params,val_acc")


def _trials(rows: list[tuple[str, str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": t, "status": s, "last_val_acc": a, "params": p, "latency_ms": np.nan}
                         for t, s, a, p in rows])


def test_the_front_holds_completed_trials_that_no_other_beats():
    trials = _trials([("a", "completed", 0.80, 1000), ("b", "completed", 0.70, 2000), ("c", "completed", 0.60, 500),
                      ("d", "pruned", 0.50, 100), ("e", "completed", 0.85, 5000), ("f", "error", 0.9, 10)])
    assert list(pareto.front(trials, "val_acc,params")["trial_id"]) == ["e", "a", "c"]  # most accurate first
    assert list(pareto.front(trials, "val_acc")["trial_id"]) == ["e"]  # one objective: the best completed trial
    assert pareto.front(trials, "val_acc,latency_ms").empty  # nothing measured: no front


# --- MO-ASHA on made-up values -------------------------------------------------------------------------
# (val_acc, params) a trial reports at every epoch. At the rung of epoch 1 with eta=2 (the first
# ceil(n/2) go on): a goes on (first); b, beaten by a, stops; c, smaller than a, goes on where plain
# ASHA stops it (0.60 is below the median accuracy), and stops at the rung of epoch 2, where it is
# the less accurate of two trials on the front; d lies between a and c on the front, and crowding
# puts it last of three: it stops at epoch 1.
VALUES = {"a": (0.80, 1000), "b": (0.70, 2000), "c": (0.60, 500), "d": (0.75, 800)}
EPOCHS_N = 4  # rungs at 1 and 2 (grace 1, eta 2), and Ray's at max_epochs, which stops nothing


def _run(scheduler, order: list[str], group: dict[str, str] | None = None) -> dict[str, int]:
    """Each trial in turn runs until stopped; returns the epochs each one trained."""
    scheduler.set_search_properties("val_acc", "max")
    trained = {}
    for trial_id in order:
        trial = SimpleNamespace(trial_id=trial_id, config={"schedule": (group or {}).get(trial_id, "constant")})
        scheduler.on_trial_add(None, trial)
        for epoch in range(1, EPOCHS_N + 1):
            acc, params = VALUES[trial_id]
            result = {"training_iteration": epoch, "val_acc": acc, "params": params}
            if scheduler.on_trial_result(None, trial, result) == STOP:
                break
        scheduler.on_trial_complete(None, trial, result)
        trained[trial_id] = epoch
    return trained


def test_mo_asha_keeps_the_first_ceil_n_over_eta_by_non_dominated_rank():
    trained = _run(make_scheduler(EPOCHS_N, 1, 2, TWO), list(VALUES))
    assert trained == {"a": EPOCHS_N, "b": 1, "c": 2, "d": 1}
    plain = ASHAScheduler(time_attr="training_iteration", max_t=EPOCHS_N, grace_period=1, reduction_factor=2)
    assert _run(plain, list(VALUES))["c"] == 1  # by accuracy alone, the small network is stopped
    # What rungs.json keeps: every trial's values at each rung it reached, as reported (Ray's milestones:
    # 1, 2 and max_epochs).
    scheduler = make_scheduler(EPOCHS_N, 1, 2, TWO)
    _run(scheduler, ["a", "b"])
    assert rungs(scheduler) == [{"group": "constant", "milestone": 1, "recorded": {"a": [0.8, 1000.0], "b": [0.7, 2000.0]}},
                                {"group": "constant", "milestone": 2, "recorded": {"a": [0.8, 1000.0]}},
                                {"group": "constant", "milestone": 4, "recorded": {"a": [0.8, 1000.0]}}]


def test_mo_asha_compares_a_trial_only_within_its_schedule():
    trained = _run(make_scheduler(EPOCHS_N, 1, 2, TWO), list(VALUES), group={"b": "onecycle"})
    assert trained["b"] == EPOCHS_N  # the first of its own group at each rung: it goes on
    assert trained["d"] == 1  # its group is a and c, as before


def test_mo_asha_rungs_survive_a_restore():
    first = make_scheduler(EPOCHS_N, 1, 2, TWO)
    _run(first, ["a", "b", "c"])
    state = json.loads(json.dumps(RungKeeper(first, "unused").get_state()))  # as rungs.json and Tune's snapshot keep it
    restored = make_scheduler(EPOCHS_N, 1, 2, TWO)
    RungKeeper(restored, "unused").set_state(state)  # before Tune sets metric and mode, as on restore
    assert rungs(restored) == rungs(first)
    assert _run(restored, ["d"]) == {"d": 1}
    assert _run(make_scheduler(EPOCHS_N, 1, 2, TWO), ["d"]) == {"d": EPOCHS_N}  # empty rungs would let it through


# --- the searcher: Optuna's multi-objective TPE ----------------------------------------------------------
def test_the_mo_searcher_tells_values_stopped_trials_and_refusals():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = {**preset("seed").to_flat(), "epochs": 3}
    space = {**base, "filters": tune.choice(["8,16", "32,64"]), "lr": tune.loguniform(1e-4, 1e-2)}
    small = parameters_of(Config.from_flat({**base, "filters": "8,16"}))
    searcher = HonestOptunaSearch(max_epochs=3, seed=0, base=base, max_params=small, objectives=TWO, startup_trials=2)
    assert searcher.set_search_properties("val_acc", "max", space)
    ended = {}
    for i in range(6):
        trial_id = f"t{i}"
        config = searcher.suggest(trial_id)
        assert config["filters"] == "8,16"  # the larger network is refused, never handed to Tune
        epochs = 3 if i % 2 == 0 else 1  # every other trial stopped by MO-ASHA at epoch 1
        for epoch in range(1, epochs + 1):
            result = {"training_iteration": epoch, "val_acc": 0.5 + 0.01 * i + 0.1 * epoch, "params": small,
                      "seconds": 360.0}
            if epoch < epochs:
                searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)
        ended[trial_id] = result
    assert searcher.refused > 0
    s = searcher.study
    assert [d.name for d in s.directions] == ["MAXIMIZE", "MINIMIZE"] and s.metric_names == list(TWO)
    told = {t.user_attrs[study.TRIAL_ID]: t for t in s.trials if study.TRIAL_ID in t.user_attrs}
    assert sorted(told) == sorted(ended)
    for trial_id, result in ended.items():
        trial = told[trial_id]
        if result["training_iteration"] == 3:
            assert trial.state == TrialState.COMPLETE and trial.values == [result["val_acc"], small]
        else:
            assert trial.state == TrialState.PRUNED and trial.values is None
            assert trial.user_attrs[STOPPED_ATTR] == {"epoch": 1, "val_acc": result["val_acc"], "params": small}
    assert searcher.spend.hours == pytest.approx(12 * 0.1)  # 3 x 3 + 3 x 1 epochs of 0.1 h, each counted once
    # TPE sees each stopped trial COMPLETE with its values at the stop, as stock OptunaSearch tells it, and
    # each refusal as a running trial (among the bad, never counted).
    assert isinstance(s.sampler, TPEWithRefusals)
    seen = {t.number: t for t in s.sampler.seen(s)._get_trials(deepcopy=False)}
    for trial_id, result in ended.items():
        assert seen[told[trial_id].number].state == TrialState.COMPLETE
        assert seen[told[trial_id].number].values == [result["val_acc"], small]
    refused = [t.number for t in s.trials if t.user_attrs.get(REFUSED_ATTR)]
    assert refused and all(seen[n].state == TrialState.RUNNING for n in refused)


# --- latency -------------------------------------------------------------------------------------------
def test_latency_is_milliseconds_per_batch_and_leaves_the_mode_alone():
    net = build(Config.from_flat({**preset("seed").to_flat(), "filters": "2,4", "dense": 8}))
    net.train()
    timed = latency.measure(net, torch.device("cpu"))
    assert set(timed) == {"latency_ms", "latency_ms_256"} and all(0 < ms < float("inf") for ms in timed.values())
    assert net.training


def test_a_trials_table_without_latencies_reads_with_them_empty(tmp_path):
    write_table(pd.DataFrame({name: [None] for name in TRIALS.names}), tmp_path / "trials.parquet", TRIALS)
    trials = read_table(tmp_path / "trials.parquet", TRIALS_WITH_LATENCY)
    assert trials.columns.tolist() == TRIALS_WITH_LATENCY.names and trials[["latency_ms", "latency_ms_256"]].isna().all(axis=None)


# --- the command line ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["objective=params"], "objective='params': choose one of val_acc | val_acc,params | val_acc,latency_ms"),
    (["objective=val_acc,params,latency_ms"], "objective='val_acc,params,latency_ms': choose one of"),
    (["objective="], "objective='': choose one of"),
    (["objective=val_acc,params", "warm_start=runs/old"], "warm_start= with objective=val_acc,params: a warm start "
                                                          "carries val_acc alone"),
])
def test_a_bad_objective_is_one_line_exit_2_and_nothing_on_disk(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert run.main(["space=augmentation", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_help_describes_objective(capsys):
    assert run.main(["--help"]) == 0
    assert "objective" in capsys.readouterr().out and "val_acc,latency_ms" in run.usage()


# --- a real replayed search on a made-up record -----------------------------------------------------------
MAX_EPOCHS = 3
SPACE = {"filters": tune.choice(["8,16", "16,32", "32,64"]), "dense": tune.choice([32, 128]),
         "lr": tune.loguniform(1e-4, 1e-2)}


def _made_up_record(folder: Path) -> Path:
    """A record of the architecture space, one curve per filters x dense: larger networks end more
    accurate, with a made-up wobble so that the front is not simply every size."""
    trials, epochs = [], []
    for i, (filters, dense) in enumerate((f, d) for f in ("8,16", "16,32", "32,64") for d in (32, 128)):
        config = Config.from_flat({**preset("seed").to_flat(), "filters": filters, "dense": dense, "lr": 1e-3,
                                   "epochs": MAX_EPOCHS}).to_flat()
        level = 0.70 + 0.04 * i - (0.09 if i == 3 else 0.0)
        val_acc = [level - 0.2 / e for e in range(1, MAX_EPOCHS + 1)]
        trial_id = f"t{i}"
        trials.append({"trial_id": trial_id, "status": "completed", "epochs_run": MAX_EPOCHS, "best_val_acc": val_acc[-1],
                       "last_val_acc": val_acc[-1], "best_val_loss": 0.5, "last_val_loss": 0.5,
                       "params": parameters_of(Config.from_flat(config)), "seconds": 3.0, "images_per_second": 500.0,
                       "node": "made-up", "cpus_per_trial": 1.0, "gpus_per_trial": 0.0, **config})
        epochs.append(pd.DataFrame({"trial_id": trial_id, "epoch": range(1, MAX_EPOCHS + 1), "train_loss": 0.6,
                                    "train_acc": val_acc, "val_loss": 0.5, "val_acc": val_acc, "lr": 1e-3,
                                    "seconds": 1.0, "images_per_second": 500.0, "node": "made-up"}))
    write_table(pd.DataFrame(trials), folder / "report" / "trials.parquet", TRIALS)
    write_table(pd.concat(epochs)[EPOCHS.names], folder / "report" / "epochs.parquet", EPOCHS)
    write_json({"space": "architecture", "width": 1.0, "params": records.params_to_json(SPACE), "max_epochs": MAX_EPOCHS,
                "subset": 600, "val_size": 300, "device": "cpu", "cpus_per_trial": 1, "gpus_per_trial": 0},
               folder / "record.json")
    return folder


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    return _made_up_record(tmp_path_factory.mktemp("record"))


def _search(record: Path, storage: Path, name: str, *more: str) -> list[str]:
    return [sys.executable, "-m", "search.run", "space=architecture", f"replay={record}", "objective=val_acc,params",
            "trials=10", "concurrency=2", "grace=1", "eta=2", f"storage={storage}", f"name={name}", *more]


def _brute_force_front(trials: pd.DataFrame) -> set[str]:
    done = trials[trials["status"] == "completed"]
    return {a.trial_id for a in done.itertuples()
            if not any(b.last_val_acc >= a.last_val_acc and b.params <= a.params
                       and (b.last_val_acc > a.last_val_acc or b.params < a.params) for b in done.itertuples())}


def test_resume_with_another_objective_is_refused(searched, monkeypatch, capsys):
    monkeypatch.chdir(searched[0].parent)
    assert run.main(["name=front", "storage=.", "objective=val_acc", "resume=true"]) == 2
    assert "objective=val_acc differs from objective=val_acc,params recorded" in capsys.readouterr().err


def test_a_replay_cannot_optimise_latency(record, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert run.main(["space=architecture", f"replay={record}", "objective=val_acc,latency_ms"]) == 2
    assert "a record holds no latencies" in capsys.readouterr().err


# Holds replayed trials: each about to report epoch $HOLD_EPOCH + 1 writes held-<trial id> into
# $HOLD_GATE and waits until the file "open" appears there (search.replay.surrogate's tune.report, wrapped).
HOLD_REPLAY = patched_on_import("search.replay.surrogate", """
class Held:
    def __init__(self, tune):
        self._tune = tune

    def __getattr__(self, name):
        return getattr(self._tune, name)

    def report(self, metrics, **kwargs):
        gate = os.environ["HOLD_GATE"]
        if metrics["epoch"] == int(os.environ["HOLD_EPOCH"]) + 1 and not os.path.exists(os.path.join(gate, "open")):
            open(os.path.join(gate, f"held-{self._tune.get_context().get_trial_id()}"), "w").close()
            while not os.path.exists(os.path.join(gate, "open")):
                time.sleep(0.1)
        return self._tune.report(metrics, **kwargs)

def patch(module):
    module.tune = Held(module.tune)
""")


@pytest.fixture(scope="module")
def searched(record, tmp_path_factory) -> tuple[Path, dict[str, str], str]:
    """A two-objective search killed with SIGKILL and resumed: (its folder, the result.json of each
    trial at epoch 1 when it was killed, the resumed run's stdout). Its trials are held before their
    second epoch: those MO-ASHA stopped at epoch 1 have ended, two wait; killed once both wait and an
    experiment snapshot was taken since (Tune takes one at least every 10 s)."""
    folder = tmp_path_factory.mktemp("killed")
    gate = folder / "gate"
    gate.mkdir()
    env = with_site(folder, HOLD_REPLAY, ENV, HOLD_GATE=str(gate), HOLD_EPOCH="1")
    experiment = folder / "runs" / "front"
    proc = subprocess.Popen(_search(record, folder / "runs", "front"), cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_held_and_snapshotted(gate, experiment, proc)
        # The driver writes each trial's result.json and Tune copies it to the storage in the
        # background, the experiment's snapshot not necessarily last: wait for the held trials' copies.
        held = [experiment / f"trial_{h.name.removeprefix('held-')}" / "result.json" for h in gate.glob("held-*")]
        wait_until(lambda: all(p.exists() and p.read_text().count("\n") == 1 for p in held), proc,
                   "the held trials' result.json in the storage", timeout=120)
        at_one = {p.parent.name.removeprefix("trial_"): p.read_text() for p in experiment.glob("trial_*/result.json")
                  if len(p.read_text().splitlines()) == 1}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    (gate / "open").touch()
    done = subprocess.run(_search(record, folder / "runs", "front", "resume=true"), cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return experiment, at_one, done.stdout


def test_a_two_objective_search_killed_and_resumed_keeps_its_rungs(searched):
    experiment, at_one, _ = searched
    exp = load(experiment)
    assert len(exp.trials) == 10 and set(exp.trials["status"]) <= {"completed", "pruned"}
    # The held trials ran again from epoch 1 (a new result.json); the stopped ones never ran again.
    stopped_before = {t for t, text in at_one.items() if (experiment / f"trial_{t}" / "result.json").read_text() == text}
    # None when the first two trials both went on at epoch 1 and were held: which of them reaches the
    # rung first decides (the first always goes on), so the count is not asserted above zero;
    # test_mo_asha_rungs_survive_a_restore restores stopped trials' rungs deterministically.
    assert len(stopped_before) == len(at_one) - 2, at_one
    assert stopped_before <= set(exp.trials.loc[exp.trials["status"] == "pruned", "trial_id"])
    # Yet rungs.json holds them: every trial that reached a milestone, with its values there.
    saved = json.loads((experiment / "rungs.json").read_text())
    params = exp.trials.set_index("trial_id")["params"]
    for milestone in {rung["milestone"] for rung in saved}:
        reached = exp.epochs[exp.epochs["epoch"] == milestone].set_index("trial_id")["val_acc"]
        recorded = {t: v for rung in saved if rung["milestone"] == milestone for t, v in rung["recorded"].items()}
        assert set(recorded) == set(reached.index), milestone
        assert all(v == pytest.approx([reached[t], params[t]]) for t, v in recorded.items())


def test_a_two_objective_search_finds_the_front_of_its_trials(searched):
    experiment, _, printed = searched
    assert "Pareto front" in printed  # the report at the end shows it
    exp = load(experiment)
    assert exp.run["objective"] == "val_acc,params"
    trials = exp.trials
    assert set(trials["status"]) <= {"completed", "pruned"} and (trials["status"] == "pruned").any()
    assert set(exp.pareto["trial_id"]) == _brute_force_front(trials) != set()
    assert exp.pareto["trial_id"].iloc[0] == exp.best["trial_id"]  # best.json: the front's most accurate point
    assert trials["latency_ms"].isna().all()  # measured only for objective=val_acc,latency_ms
    # Optuna's study: two directions; completed trials told their last epoch's values, pruned ones PRUNED.
    by_id = {t.user_attrs[study.TRIAL_ID]: t for t in study.load(experiment).trials}
    assert len(study.load(experiment).directions) == 2
    for row in trials.itertuples():
        told = by_id[row.trial_id]
        if row.status == "completed":
            assert told.state == TrialState.COMPLETE and told.values == pytest.approx([row.last_val_acc, row.params])
        else:
            assert told.state == TrialState.PRUNED and told.user_attrs[STOPPED_ATTR]["epoch"] == row.epochs_run


def test_show_prints_the_front_and_draws_it(searched):
    searched = searched[0]
    done = subprocess.run([sys.executable, "-m", "results.show", str(searched)], env=ENV, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pareto front" in done.stdout and f"search.retrain {searched} trial=ID" in done.stdout
    for trial_id in load(searched).pareto["trial_id"]:
        assert trial_id in done.stdout
    figure = searched / "report" / "pareto.png"
    assert f"Pareto front figure: {figure}" in done.stdout and figure.read_bytes()[:4] == b"\x89PNG"




def test_retrain_takes_the_fronts_best_or_any_point_of_it(searched):
    from search.retrain.plan import parse_args

    experiment = searched[0]
    front = load(experiment).pareto
    assert parse_args([str(experiment)]).source == f"best trial {front['trial_id'].iloc[0]}"
    for row in front.itertuples():
        plan = parse_args([str(experiment), f"trial={row.trial_id}"])
        assert plan.source == f"trial {row.trial_id}"
        assert (",".join(map(str, plan.cfg.filters)), plan.cfg.dense, plan.cfg.lr) == (row.filters, row.dense, row.lr)
