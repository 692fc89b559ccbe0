"""The network built from a Config: the report's layer shapes and parameter counts, every BatchNorm
placement forward and backward, and the Config's validation and flat round trip."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import model
from model.config import ACTIVATIONS, BATCHNORM, BN_ORDER, OPTIMIZERS, PADDING, SCHEDULES, Config


def _output_shapes(net: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Per named layer, the shape of its output without the batch dimension (channels last, as
    Keras prints it, for 4-D maps)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str):
        def record(_module, _inputs, output):
            size = tuple(output.shape[1:])
            shapes[name] = (size[1], size[2], size[0]) if len(size) == 3 else size

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in net.named_children()]
    try:
        net.eval()
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def test_seed_layer_output_shapes_match_the_report():
    net = model.build(model.PRESETS["seed"])
    shapes = _output_shapes(net, torch.rand(2, 1, 28, 28))
    expected = {
        "block1_conv1": (26, 26, 64),
        "block1_conv2": (24, 24, 64),
        "block1_pool": (12, 12, 64),
        "block2_conv1": (10, 10, 128),
        "block2_conv2": (8, 8, 128),
        "block2_pool": (4, 4, 128),
        "flatten": (2048,),
        "dense": (256,),
        "logits": (10,),
    }
    assert {name: shapes[name] for name in expected} == expected
    # BatchNorm, activations and dropout keep the shape of what they follow.
    names = list(shapes)
    for i, name in enumerate(names):
        if name.endswith(("_bn", "_act", "_dropout")):
            assert shapes[name] == shapes[names[i - 1]], name


@pytest.mark.parametrize(("name", "count"), [("seed", 786_890), ("baseline", 786_122)])
def test_preset_parameter_counts(name, count):
    assert model.count_parameters(model.build(model.PRESETS[name])) == count


def test_baseline_is_seed_without_batchnorm_and_augmentation():
    seed, baseline = model.PRESETS["seed"], model.PRESETS["baseline"]
    assert replace(seed, batchnorm="none", strength=0.0) == baseline
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.build(seed).modules()) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.build(baseline).modules())


def _forward_backward(cfg: Config, batch: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    net = model.build(cfg)
    net.train()
    logits = net(torch.rand(batch, 1, 28, 28))
    assert logits.shape == (batch, 10)
    loss = F.cross_entropy(logits, torch.arange(batch) % 10)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())
    return logits


BN_COUNT_TWO_CONVS = {"none": 0, "every": 2, "block": 1}  # per block, with convs_per_block=2


@pytest.mark.parametrize("layout", ["valid-2-blocks", "same-3-blocks"])
@pytest.mark.parametrize("dense", [32, 0], ids=["dense-head", "pool-head"])
@pytest.mark.parametrize("bn_order", BN_ORDER)
@pytest.mark.parametrize("batchnorm", BATCHNORM)
def test_every_batchnorm_placement_trains(batchnorm, bn_order, dense, layout):
    filters, padding = ((8, 16), "valid") if layout == "valid-2-blocks" else ((8, 16, 32), "same")
    cfg = Config(filters=filters, padding=padding, batchnorm=batchnorm, bn_order=bn_order, dense=dense)
    _forward_backward(cfg)

    net = model.build(cfg)
    children = list(net.named_children())
    bns = [i for i, (_, m) in enumerate(children) if isinstance(m, nn.BatchNorm2d)]
    expected = 1 if batchnorm == "single" else BN_COUNT_TWO_CONVS[batchnorm] * len(filters)
    assert len(bns) == expected
    for i in bns:
        before = children[i - 1][1]
        # "pre": conv -> BN -> act; "post": conv -> act -> BN.
        assert isinstance(before, nn.Conv2d if bn_order == "pre" else nn.ReLU), children[i][0]
        assert children[i][1].num_features == (before.out_channels if bn_order == "pre" else children[i - 2][1].out_channels)

    logits = children[-1][1]
    if dense:
        side = 4 if padding == "valid" else 3  # valid: 28-4=24 -> 12 -> 8 -> 4; same: 28 -> 14 -> 7 -> 3
        assert net.dense.in_features == filters[-1] * side * side
        assert logits.in_features == dense
    else:
        assert isinstance(net.pool, nn.AdaptiveAvgPool2d)
        assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 1
        assert logits.in_features == filters[-1]


def test_single_batchnorm_sits_in_the_middle_block():
    net = model.build(Config(filters=(8, 16, 32), padding="same", batchnorm="single"))
    assert [name for name, m in net.named_children() if isinstance(m, nn.BatchNorm2d)] == ["block2_conv2_bn"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds_and_trains(activation):
    net = model.build(Config(filters=(8, 16), dense=16, activation=activation))
    acts = {type(m).__name__.lower() for name, m in net.named_children() if name.endswith("_act")}
    assert acts == {activation}
    _forward_backward(Config(filters=(8, 16), dense=16, activation=activation))


def test_network_normalizes_raw_pixels():
    net = model.build(Config(filters=(4, 4), dense=8))
    x = torch.full((1, 1, 28, 28), model.net.PIXEL_MEAN)
    assert torch.allclose(net.normalize(x), torch.zeros_like(x), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=(64, 128, 256)),  # valid padding: 28 -> 24 -> 12 -> 8 -> 4 -> 0
        dict(filters=(8, 8), kernel_size=15),
        dict(filters=(8,) * 5, padding="same"),  # 28 -> 14 -> 7 -> 3 -> 1 -> 0
    ],
)
def test_a_network_that_shrinks_to_nothing_is_rejected(kwargs):
    with pytest.raises(ValueError, match="filters="):
        Config(**kwargs)
    with pytest.raises(ValueError, match="filters="):
        Config.from_flat({k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in kwargs.items()})


def test_three_blocks_fit_with_same_padding():
    cfg = Config.from_flat({"filters": "64,128,256", "padding": "same"})
    assert cfg.feature_side() == 3
    assert model.build(cfg)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "cfg",
    [
        *model.PRESETS.values(),
        Config(filters=(16, 32, 64), padding="same", batchnorm="single", bn_order="pre", activation="gelu", dense=0,
               lr=1.5e-3, weight_decay=1e-4, optimizer="sgd", schedule="onecycle", strength=0.3, erasing=0.5, seed=7),
    ],
)
def test_from_flat_round_trips_to_flat(cfg):
    flat = cfg.to_flat()
    assert set(flat) == {f.name for f in fields(Config)}
    assert all(isinstance(v, (str, int, float)) for v in flat.values())
    assert flat["filters"] == ",".join(map(str, cfg.filters))
    assert Config.from_flat(flat) == cfg
    # Text (a CLI, a Parquet column) parses back to the same config too.
    assert Config.from_flat({k: str(v) for k, v in flat.items()}) == cfg


def test_from_flat_applies_values_on_a_base():
    base = model.PRESETS["baseline"]
    cfg = Config.from_flat({"lr": "1e-3", "epochs": 5.0, "filters": "32, 64"}, base=base)
    assert (cfg.lr, cfg.epochs, cfg.filters) == (1e-3, 5, (32, 64))
    assert cfg.batchnorm == "none" and cfg.strength == 0.0
    assert isinstance(cfg.epochs, int)


@pytest.mark.parametrize(
    ("field", "choices"),
    [
        ("activation", ACTIVATIONS),
        ("batchnorm", BATCHNORM),
        ("bn_order", BN_ORDER),
        ("padding", PADDING),
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
    ],
)
def test_bad_choice_names_the_field_and_the_valid_choices(field, choices):
    with pytest.raises(ValueError) as info:
        Config.from_flat({field: "bogus"})
    message = str(info.value)
    assert message.startswith(f"{field}='bogus'")
    for choice in choices:
        assert choice in message


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"lr": "fast"}, "lr='fast': expected a number"),
        ({"epochs": "2.5"}, "epochs='2.5': expected an integer"),
        ({"filters": "64,x"}, "filters='64,x': expected comma-separated integers"),
        ({"filters": "64,0"}, "filters=(64, 0)"),
        ({"kernel_size": 4}, "kernel_size=4"),
        ({"flip": 1.5}, "flip=1.5"),
        ({"dense_dropout": 1.0}, "dropout"),
        ({"zoom": 1.0}, "zoom=1.0"),
        ({"shift": 0.6}, "shift=0.6"),
        ({"lr": 0}, "lr=0"),
        ({"dense": -1}, "dense=-1"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(values, fragment):
    with pytest.raises(ValueError) as info:
        Config.from_flat(values)
    assert fragment in str(info.value)


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ValueError) as info:
        Config.from_flat({"learning_rate": 0.1})
    message = str(info.value)
    assert "learning_rate" in message
    for f in fields(Config):
        assert f.name in message


def _params(cfg: Config) -> int:
    return model.count_parameters(model.build(cfg))


@pytest.mark.parametrize("padding", PADDING)
def test_residual_adds_a_shortcut_per_block_with_a_1x1_conv_where_the_width_changes(padding):
    plain = Config(filters=(16, 32), convs_per_block=2, dense=64, padding=padding)
    shortcut = replace(plain, residual=True)
    # Block 1 goes 1 -> 16 channels, block 2 16 -> 32: two 1x1 convs without bias.
    assert _params(shortcut) - _params(plain) == 1 * 16 + 16 * 32
    same_width = replace(shortcut, filters=(16, 16))
    assert _params(same_width) - _params(replace(same_width, residual=False)) == 1 * 16  # block 2: identity
    net = model.build(shortcut).train()
    x = torch.rand(4, 1, 28, 28)
    assert net(x).shape == (4, 10)
    F.cross_entropy(net(x), torch.zeros(4, dtype=torch.long)).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_residual_block_is_its_convs_plus_the_cropped_input():
    cfg = Config(filters=(8,), convs_per_block=2, dense=16, padding="valid", residual=True, batchnorm="none")
    block = model.build(cfg).block1_residual
    x = torch.rand(2, 1, 28, 28)
    # Two valid 3x3 convs shrink 28 -> 24: the shortcut takes the central 24x24 of the input.
    expected = block.body(x) + block.shortcut(x[:, :, 2:-2, 2:-2])
    assert torch.equal(block(x), expected) and expected.shape == (2, 8, 24, 24)


def test_defaults_have_no_shortcut_and_no_mirror_average():
    assert _params(Config()) == 786_890
    assert not Config().residual and not Config().mirror_tta


def test_mirror_average_is_the_mean_of_the_two_logits_in_eval_mode_only():
    cfg = Config(filters=(8, 16), dense=32, mirror_tta=True)
    net = model.build(cfg)
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    net.eval()
    plain = nn.Sequential(*net.children()).eval()  # the same layers without the average
    with torch.no_grad():
        assert torch.allclose(net(x), (plain(x) + plain(x.flip(-1))) / 2, atol=1e-6)
        assert not torch.allclose(net(x), plain(x), atol=1e-4)
    net.train()
    torch.manual_seed(1)
    trained = net(x)
    torch.manual_seed(1)
    assert torch.equal(trained, plain.train()(x))  # training sees the image only


def test_mirror_average_is_inside_the_onnx_graph(tmp_path):
    from model import export

    cfg = Config(filters=(8, 16), dense=32, mirror_tta=True, residual=True)
    torch.manual_seed(0)
    net = model.build(cfg).eval()
    images = (torch.rand(16, 28, 28) * 255).to(torch.uint8).numpy()
    onnx = export.onnx_logits(export.export_onnx(net, tmp_path / "m.onnx"), images)
    torch_ = export.torch_logits(net, images)
    plain = export.torch_logits(nn.Sequential(*net.children()), images)
    assert abs(onnx - torch_).max() < 1e-4
    assert abs(onnx - plain).max() > 1e-3  # the mirror made a difference the graph kept


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False), ("1", True), (True, True)])
def test_flags_parse_from_text_and_values(text, value):
    assert Config.from_flat({"residual": text}).residual is value


def test_a_flag_that_is_not_true_or_false_is_refused():
    with pytest.raises(ValueError, match="residual='maybe'"):
        Config.from_flat({"residual": "maybe"})


def test_model_train_is_the_command_module_only():
    import importlib

    assert "train" not in model.__all__
    assert importlib.import_module("model.train").__name__ == "model.train"
    from model.trainer import train  # the function lives with the Trainer

    assert callable(train)
