"""Training: a short run learns, a checkpoint resumes to identical results, and the CLI rejects
bad input with exit code 2 and one line on stderr."""

from __future__ import annotations

import copy
import io
import os
import math
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from model import PRESETS, Config, Trainer, data
from model.trainer import score, train
from model.net import to_input as model_input

REPO = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "images_per_second")


@pytest.fixture(scope="module")
def small_split(train_set) -> data.Split:
    return data.split(*train_set, val_size=500, subset=1024, seed=0)


def _tiny(**kwargs) -> Config:
    """The seed recipe, narrow enough for a test: dropout, BatchNorm and augmentation all on."""
    return replace(PRESETS["seed"], filters=(8, 16), dense=32, **kwargs)


def test_short_training_run_clears_70_percent(train_set):
    # The seed network at a quarter of the width, half-strength augmentation, 6,000 images, 2 epochs
    # (about 3 s on 2 idle cores; measured 0.78 for seeds 0-2).
    split = data.split(*train_set, val_size=2000, subset=6000, seed=0)
    cfg = replace(PRESETS["seed"], filters=(16, 32), dense=64, strength=0.5, lr=3e-3, schedule="onecycle", epochs=2)
    seen = []
    trainer = train(cfg, split, on_epoch=seen.append, device="cpu")
    assert [m.epoch for m in seen] == [1, 2]
    assert seen[-1].val_acc > 0.70, seen
    assert seen[-1].train_loss < seen[0].train_loss
    assert seen[-1].lr < cfg.lr / 100  # one-cycle ends near zero
    seen_images = 6000 // cfg.batch_size * cfg.batch_size  # whole batches only
    # images/s counts training time only; seconds covers training and validation.
    assert all(seen_images / m.seconds <= m.images_per_second < 100_000 for m in seen)
    assert trainer.evaluate(trainer.val_x, trainer.val_y)[1] == pytest.approx(seen[-1].val_acc)


def _same_weights(a: Trainer, b: Trainer) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_timing(m) -> dict:
    return {k: v for k, v in asdict(m).items() if k not in TIMING}


@pytest.mark.parametrize("bn_bias_lr", [1.0, 16.0])  # one parameter group, or two
def test_checkpoint_resumes_to_identical_results(small_split, bn_bias_lr):
    cfg = _tiny(erasing=0.5, schedule="cosine", epochs=2, bn_bias_lr=bn_bias_lr)
    straight = Trainer(cfg, small_split, "cpu")
    straight.run_epoch()
    expected = straight.run_epoch()

    first = Trainer(cfg, small_split, "cpu")
    first.run_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Trainer(cfg, small_split, "cpu")
    assert not _same_weights(resumed, first)  # the restore below is what makes them equal
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.epoch == 1 and _same_weights(resumed, first)
    got = resumed.run_epoch()

    assert got.epoch == 2
    assert _without_timing(got) == _without_timing(expected)
    assert _same_weights(resumed, straight)
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_same_seed_same_run_other_seed_other_run(small_split):
    runs = [Trainer(_tiny(seed=s), small_split, "cpu").run_epoch() for s in (0, 0, 1)]
    assert _without_timing(runs[0]) == _without_timing(runs[1])
    assert _without_timing(runs[0]) != _without_timing(runs[2])


def test_checkpoint_of_another_config_is_refused(small_split):
    state = Trainer(_tiny(), small_split, "cpu").state_dict()
    with pytest.raises(ValueError, match="different config"):
        Trainer(_tiny(lr=1e-3), small_split, "cpu").load_state_dict(state)


def test_no_validation_set_gives_nan_metrics(small_split):
    split = replace(small_split, val_images=small_split.val_images[:0], val_labels=small_split.val_labels[:0])
    m = Trainer(_tiny(), split, "cpu").run_epoch()
    assert math.isnan(m.val_loss) and math.isnan(m.val_acc)
    assert math.isfinite(m.train_loss) and 0 <= m.train_acc <= 1


def test_batch_larger_than_the_training_set_is_refused(small_split):
    with pytest.raises(ValueError, match="batch_size=2048"):
        Trainer(_tiny(batch_size=2048), small_split, "cpu")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bogus=1"], "unknown key 'bogus'"),
        (["epochs=2", "lr=fast"], "lr='fast'"),
        (["batchnorm=sometimes"], "none, every, block, single"),
        (["ema_epochs=-1"], "ema_epochs=-1.0: the weight average's horizon must lie between 0 (off) and 10,000 epochs"),
        (["subset=1" + "0" * 400], "0000: must lie between 1 and 60,000"),  # no float holds it
    ],
    ids=["unknown-key", "bad-number", "bad-choice", "bad-horizon", "huge-number"],
)
def test_cli_rejects_bad_input_with_one_line(args, fragment):
    done = subprocess.run(
        [sys.executable, "-m", "model.train", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert done.stdout == ""


def test_an_epoch_augments_every_image_with_its_own_draws(small_split, monkeypatch):
    # Every training image the same: an epoch's batches, here from four augmentation chunks of 256,
    # must still hold 1,024 distinct images.
    monkeypatch.setattr("model.trainer.AUGMENT_CHUNK", 256)
    same = replace(small_split, train_images=small_split.train_images[:1].repeat(1024, axis=0))
    trainer = Trainer(_tiny(batch_size=32), same, "cpu")
    images = torch.cat([x for x, _ in trainer.batches()])
    assert images.shape == (1024, 1, 28, 28)
    assert len(torch.unique(images.flatten(1), dim=0)) == 1024


def test_an_epoch_visits_a_permutation_of_the_training_images(small_split):
    split = replace(small_split, train_labels=torch.arange(1024).numpy())  # labels as image ids
    trainer = Trainer(_tiny(batch_size=100, strength=0.0), split, "cpu")
    ids = torch.cat([y for _, y in trainer.batches()])
    assert len(ids) == 1000 == len(set(ids.tolist()))  # 10 whole batches, no image twice
    assert not torch.equal(ids, torch.arange(1000))


def test_the_captured_step_needs_cuda(small_split):
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        Trainer(_tiny(), small_split, "cpu", cuda_graph=True)
    assert Trainer(_tiny(), small_split, "cpu").cuda_graph is False


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_captured_and_plain_step_reach_the_same_accuracy(train_set):
    split = data.split(*train_set, val_size=6000, subset=20000, seed=0)
    cfg = replace(PRESETS["seed"], batch_size=128, epochs=5)
    accuracy = {}
    for graph in (True, False):
        trainer = train(cfg, split, device="cuda", cuda_graph=graph)
        assert trainer.cuda_graph is graph
        accuracy[graph] = trainer.evaluate(trainer.val_x, trainer.val_y)[1]
    assert abs(accuracy[True] - accuracy[False]) <= 0.003, accuracy
    assert accuracy[True] > 0.85


@cuda
def test_captured_step_resumes_exactly(small_split, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # cuDNN may otherwise pick atomics
    cfg = _tiny(erasing=0.5, schedule="onecycle", epochs=2, batch_size=64)
    straight = Trainer(cfg, small_split, "cuda", cuda_graph=True)
    straight.run_epoch()
    expected = straight.run_epoch()

    first = Trainer(cfg, small_split, "cuda", cuda_graph=True)
    first.run_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Trainer(cfg, small_split, "cuda", cuda_graph=True)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    got = resumed.run_epoch()
    assert _without_timing(got) == _without_timing(expected)
    assert _same_weights(resumed, straight)


def test_weight_average_matches_its_closed_form():
    from model.ema import WeightAverage

    decay = 0.9
    net = torch.nn.Linear(3, 2)
    average = WeightAverage(net, horizon=1 / (1 - decay))
    history = []
    for step in range(1, 6):
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p))  # any sequence of weights
        history.append([p.detach().clone() for p in net.parameters()])
        average.update(net)
        got = list(average.averaged(net, torch.rand(4, 3)).parameters())
        for j, value in enumerate(got):
            # (1 - d) * sum_i d^(t-i) w_i / (1 - d^t)
            expected = sum((1 - decay) * decay ** (step - i) * history[i - 1][j] for i in range(1, step + 1))
            assert torch.allclose(value, expected / (1 - decay**step), atol=1e-6)
    assert not torch.allclose(got[0], net.weight)


def test_validation_uses_the_weight_average_and_resumes_exactly(small_split):
    cfg = _tiny(ema_epochs=2.0, epochs=2)
    straight = Trainer(cfg, small_split, "cpu")
    straight.run_epoch()
    expected = straight.run_epoch()
    live = Trainer(cfg, small_split, "cpu")
    live.run_epoch()
    live.net.eval()
    with torch.no_grad():
        live_acc = (live.net(model_input(live.val_x)).argmax(1) == live.val_y).float().mean().item()
    buffer = io.BytesIO()
    torch.save(live.state_dict(), buffer)
    buffer.seek(0)
    assert live.evaluate(live.val_x, live.val_y)[1] != pytest.approx(live_acc, abs=1e-9)  # not the live weights
    resumed = Trainer(cfg, small_split, "cpu")
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert _without_timing(resumed.run_epoch()) == _without_timing(expected)
    a, b = resumed.eval_net().state_dict(), straight.eval_net().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["dense.weight"], resumed.net.dense.weight)


@pytest.mark.parametrize(("batch_size", "steps_per_epoch"), [(64, 16), (256, 4)])
def test_the_weight_average_spans_the_same_epochs_at_every_batch_size(small_split, batch_size, steps_per_epoch):
    # 1,024 training images: a horizon of 2 epochs is 32 steps at batch 64 and 8 steps at batch 256.
    trainer = Trainer(_tiny(ema_epochs=2.0, batch_size=batch_size), small_split, "cpu")
    assert trainer.steps_per_epoch == steps_per_epoch
    assert trainer.average.decay == pytest.approx(1 - 1 / (2 * steps_per_epoch))
    # Under one step (a tenth of an epoch of 2 steps) the average is the last weights: decay 0.
    assert Trainer(_tiny(ema_epochs=0.1, batch_size=512), small_split, "cpu").average.decay == 0
    assert Trainer(_tiny(), small_split, "cpu").average is None  # ema_epochs=0: off


def test_the_averaged_network_normalises_with_its_own_statistics(small_split):
    # Its BatchNorm statistics are the averaged weights' own on unaugmented training images, as
    # torch.optim.swa_utils.update_bn computes them, not the live network's, which were gathered
    # with other weights. No dropout: update_bn would draw it, the trainer's pass leaves it off.
    cfg = _tiny(ema_epochs=1.0, lr=3e-3, block_dropout=0.0, dense_dropout=0.0)
    trainer = Trainer(cfg, small_split, "cpu")
    trainer.run_epoch()
    averaged = trainer.eval_net()
    assert not averaged.training
    own = copy.deepcopy(averaged)
    torch.optim.swa_utils.update_bn([model_input(trainer.bn_images)], own)
    got, expected, live = averaged.state_dict(), own.state_dict(), trainer.net.state_dict()
    stats = [k for k in got if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * 4  # BatchNorm after each of the four convs
    assert all(torch.allclose(got[k], expected[k], rtol=1e-4, atol=1e-5) for k in stats)
    assert not any(torch.allclose(got[k], live[k], rtol=1e-2) for k in stats)
    assert len(trainer.bn_images) == 1024  # every training image, as 1,024 < BN_IMAGES
    assert trainer.eval_net().state_dict()["dense.weight"].data_ptr() == got["dense.weight"].data_ptr()


@pytest.mark.parametrize(("optimizer", "key", "value"), [("sgd", "momentum", 0.8), ("adamw", "betas", (0.9, 0.999))])
def test_one_cycle_schedules_the_learning_rate_only(small_split, optimizer, key, value):
    cfg = _tiny(optimizer=optimizer, momentum=0.8, schedule="onecycle", epochs=1)
    trainer = Trainer(cfg, small_split, "cpu")
    group = trainer.optimizer.param_groups[0]
    seen_lr = set()
    for x, y in trainer.batches():
        assert group[key] == value  # as configured at every step, not PyTorch's 0.95 -> 0.85 cycle
        trainer.train_step(x, y)
        seen_lr.add(group["lr"])
    assert len(seen_lr) == trainer.steps_per_epoch  # the learning rate does move every step


@pytest.mark.parametrize(("optimizer", "batch_size", "factor"), [("adam", 64, 1), ("adamw", 256, 2), ("sgd", 256, 4), ("sgd", 32, 0.5)])
def test_lr_is_per_64_images(small_split, optimizer, batch_size, factor):
    cfg = _tiny(optimizer=optimizer, batch_size=batch_size, lr=1e-3)
    trainer = Trainer(cfg, small_split, "cpu")
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * factor)


def _first_step(cfg: Config, split: data.Split) -> dict[str, torch.Tensor]:
    """Each parameter's change over one training step."""
    trainer = Trainer(cfg, split, "cpu")
    before = {k: p.detach().clone() for k, p in trainer.net.named_parameters()}
    trainer.train_step(*next(trainer.batches()))
    return {k: p.detach() - before[k] for k, p in trainer.net.named_parameters()}


def test_batchnorm_biases_learn_at_bn_bias_lr_times_lr(small_split):
    # Adam's first step moves every weight by about lr (the gradient over its own magnitude), so the
    # BatchNorm biases move 16 times as far at bn_bias_lr=16, and every other parameter as before.
    plain, scaled = (_first_step(_tiny(lr=1e-3, bn_bias_lr=k), small_split) for k in (1.0, 16.0))
    biases = [k for k in plain if k.endswith("_bn.bias")]
    assert len(biases) == 4  # the seed network: BatchNorm after each of its 4 convs
    for k in plain:
        moved = scaled[k].abs().sum() / plain[k].abs().sum()
        assert moved == pytest.approx(16 if k in biases else 1, rel=1e-3), k


def test_one_cycle_keeps_the_batchnorm_biases_at_their_multiple(small_split):
    trainer = Trainer(_tiny(schedule="onecycle", bn_bias_lr=16.0, epochs=1), small_split, "cpu")
    rest, biases = trainer.optimizer.param_groups
    for x, y in trainer.batches():
        assert biases["lr"] == pytest.approx(16 * rest["lr"])
        trainer.train_step(x, y)
    assert rest["lr"] < trainer.cfg.step_lr() / 100  # the cycle ran, in both groups


def test_the_seed_preset_trains_as_the_report():
    cfg = PRESETS["seed"]
    assert (cfg.optimizer, cfg.batch_size, cfg.step_lr(), cfg.schedule) == ("adam", 64, 5e-4, "constant")


def test_cli_table_fits_80_columns_without_cutting_a_number():
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    done = subprocess.run(
        [sys.executable, "-m", "model.train", "filters=8,16", "dense=32", "epochs=1", "subset=640", "val_size=300"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "…" not in done.stdout and all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "train loss" in line)
    assert header.split() == ["epoch", "train", "loss", "train", "acc", "val", "loss", "val", "acc", "lr", "s", "img/s"]
    assert any(line.split()[:1] == ["1"] and line.rstrip().endswith(tuple("0123456789")) for line in lines)


def test_accuracy_is_hits_over_images_exactly():
    labels = torch.zeros(1000, dtype=torch.long)
    logits = torch.zeros(1000, 10)
    logits[:736, 0] = 1.0  # 736 of 1,000 right
    logits[736:, 1] = 1.0
    _, accuracy = score(logits, labels)
    assert accuracy == 0.736  # not float32's 0.7360000014305115
