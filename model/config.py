"""One frozen, flat configuration for a whole training run: network, augmentation, optimisation.

Flat on purpose: every field is a search-space key, a `key=value` override on the command line
and a typed column in the result tables, under the same name. Tuples (per-block filter counts)
travel as text ("64,128") wherever a scalar is required: search spaces, Parquet, the CLI.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields, replace

from model.overrides import as_int, parse_bool
from model.registry import Registry

ACTIVATIONS = ("relu", "gelu", "silu", "elu")
LR_BATCH = 64  # the batch size at which `lr` is the optimizer's own learning rate (the report's)
IMAGE_SIZE = 28  # Fashion-MNIST images are 28x28, one channel
# Sane caps: beyond them a value is a typo that would exhaust memory or run for ever.
MAX_WIDTH = 4096  # channels per conv block (dense: 16x this)
MAX_CONVS = 16  # convs per block
MAX_BATCH = 60_000  # images per batch: the whole training set
MAX_EPOCHS = 10_000
MAX_SEED = 2**32 - 1  # numpy's and Optuna's generators take 32-bit seeds
MAX_BN_BIAS_LR = 1024.0  # a multiple of lr; airbench's is 64
BATCHNORM = ("none", "every", "block", "single")  # after every conv / once per block / one layer mid-network
BN_ORDER = ("post", "pre")  # BatchNorm after the activation (Keras Conv2D(activation=...)+BN) or before it
PADDING = ("valid", "same")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


@dataclass(frozen=True)
class Config:
    # --- network -------------------------------------------------------------------------
    filters: tuple[int, ...] = (64, 128)  # conv channels per block; one 2x2 max-pool closes each block
    convs_per_block: int = 2  # the report stacks two 3x3 convs before each pool
    kernel_size: int = 3  # odd, so "same" padding is symmetric
    padding: str = "valid"  # the report's convs shrink 28->26->24: "valid"
    batchnorm: str = "every"  # where BatchNorm goes: none / every conv / end of each block / single mid-network
    bn_order: str = "post"  # "post": conv -> act -> BN (the report's Keras layout); "pre": conv -> BN -> act
    activation: str = "relu"
    block_dropout: float = 0.25  # dropout after each pool (the report: .25)
    dense: int = 256  # hidden dense width; 0 = global-average-pool head straight into the 10 logits
    dense_dropout: float = 0.5  # before the last layer (the report: .5)
    # Every small network above 95.5% on Fashion-MNIST has shortcuts: each block's convs (with their
    # BN and activations) plus the block's input (identity, or a 1x1 conv when the width changes;
    # centre-cropped when valid padding shrinks the map). Off in the report's networks.
    residual: bool = False
    # Evaluation (validation, test, model.pt, ONNX) averages the logits of the image and its mirror:
    # the flip symmetry used at test time too (+0.15 to 0.27 points in the H200 runs of 2026-11-26).
    mirror_tta: bool = False
    # --- augmentation: effective value = strength * knob; knobs are the report's settings --
    strength: float = 1.0  # 0 = exactly no augmentation, 1 = the report's augmentation
    rotation: float = 15.0  # degrees, max |angle|
    shift: float = 0.1  # fraction of the image side, max |shift| in x and y
    shear: float = 10.0  # degrees, max |shear| along x
    zoom: float = 0.1  # fraction, scale drawn from [1 - zoom, 1 + zoom]
    flip: float = 0.5  # probability of a horizontal mirror
    erasing: float = 0.0  # probability of random erasing (the report's future work; off at 1.0 strength)
    # --- optimisation --------------------------------------------------------------------
    optimizer: str = "adam"
    # Peak learning rate per LR_BATCH images: one value means the same at every batch size. A step of
    # batch_size images uses lr * (batch_size / LR_BATCH) with SGD (the linear rule: a gradient of k
    # times the images is k times less noisy) and lr * sqrt(batch_size / LR_BATCH) with Adam/AdamW (the
    # square-root rule for adaptive methods). The report: Adam 5e-4 at batch 64, so exactly 5e-4.
    lr: float = 5e-4
    weight_decay: float = 0.0  # L2 for adam/sgd, decoupled for adamw
    # SGD's (Nesterov) momentum, on every schedule: one-cycle schedules the learning rate only, so
    # this value holds throughout (PyTorch's OneCycleLR would cycle it between 0.95 and 0.85 unless
    # told not to). Adam and AdamW keep PyTorch's beta1 = 0.9 throughout, one-cycle included.
    momentum: float = 0.9
    batch_size: int = 64  # the report's batch size; larger batches run faster on a GPU
    # BatchNorm biases learn at this multiple of lr, with the same decay per step (their weight decay is
    # divided by it): airbench's bias scaler (64, SGD). The biases only shift each channel, so a large
    # step cannot blow up the network, and they settle sooner: +0.45 points of validation accuracy
    # with 16 at quarter width, 7 seeds (docs/model.md). 1 = the optimizer as the report built it.
    bn_bias_lr: float = 1.0
    label_smoothing: float = 0.0
    # Validation, test and export use an exponential moving average of the weights, with BatchNorm
    # statistics recomputed for it (model/ema.py). This is its horizon in epochs: its time constant
    # 1/(1 - decay) in optimizer steps over the steps per epoch (training images // batch_size), so one
    # value averages the same share of training at every batch size and subset. 0 = off; a horizon
    # under one step is the last weights. Bias-corrected as Adam's moments, so the average holds only
    # trained weights from the first step on (short ASHA rungs included).
    ema_epochs: float = 0.0
    schedule: str = "constant"  # lr only, over the run's epochs: constant / cosine to 0 / one-cycle
    epochs: int = 30  # schedule length; a search sets it to max_epochs so every rung sees one schedule
    seed: int = 0  # weights, batch order and augmentation draws

    def __post_init__(self) -> None:
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("batchnorm", self.batchnorm, BATCHNORM)
        _check_choice("bn_order", self.bn_order, BN_ORDER)
        _check_choice("padding", self.padding, PADDING)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        for f in fields(self):  # NaN passes every comparison below, and inf turns losses into NaN
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}={value}: must be a finite number")
        if not self.filters or any(not 1 <= f <= MAX_WIDTH for f in self.filters):
            raise ValueError(f"filters={self.filters!r}: give one channel count in 1..{MAX_WIDTH} per block, e.g. 64,128")
        for name, most in (("convs_per_block", MAX_CONVS), ("batch_size", MAX_BATCH), ("epochs", MAX_EPOCHS)):
            if not 1 <= getattr(self, name) <= most:
                raise ValueError(f"{name}={getattr(self, name)}: must lie between 1 and {most:,}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed={self.seed}: must lie between 0 and {MAX_SEED:,} (2**32 - 1)")
        if not 1 <= self.kernel_size < IMAGE_SIZE or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size}: must be odd, between 1 and {IMAGE_SIZE - 1}")
        if not 0 <= self.dense <= MAX_WIDTH * 16:
            raise ValueError(f"dense={self.dense}: must lie between 0 and {MAX_WIDTH * 16:,} (0 means a global-average-pool head)")
        if not 0.0 <= self.ema_epochs <= MAX_EPOCHS:
            raise ValueError(f"ema_epochs={self.ema_epochs}: the weight average's horizon must lie between 0 (off) "
                             f"and {MAX_EPOCHS:,} epochs, e.g. 2")
        for name in ("block_dropout", "dense_dropout", "flip", "erasing", "label_smoothing", "strength"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: must lie in [0, 1]")
        if self.block_dropout == 1.0 or self.dense_dropout == 1.0:
            raise ValueError("a dropout rate of 1.0 zeroes every activation: use a value below 1")
        for name in ("rotation", "shift", "shear", "zoom", "weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr:g}: the learning rate must be positive")
        if not 0 < self.bn_bias_lr <= MAX_BN_BIAS_LR:
            raise ValueError(f"bn_bias_lr={self.bn_bias_lr}: must lie in (0, {MAX_BN_BIAS_LR:g}] (a multiple of lr; 1 = none)")
        if self.rotation > 180:
            raise ValueError(f"rotation={self.rotation}: must be at most 180 (degrees either way)")
        if self.shear >= 90:
            raise ValueError(f"shear={self.shear}: must be below 90 (degrees; tan(90) is infinite)")
        if self.zoom >= 1:
            raise ValueError(f"zoom={self.zoom}: must be below 1 (scale is drawn from [1 - zoom, 1 + zoom])")
        if self.shift > 0.5:
            raise ValueError(f"shift={self.shift}: must be at most 0.5 (a fraction of the image side)")
        if self.momentum >= 1:
            raise ValueError(f"momentum={self.momentum}: must be below 1 (at 1 and above SGD's steps never decay)")
        if self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError("optimizer=sgd with momentum=0: Nesterov SGD needs a momentum above 0 (e.g. 0.9)")
        self.feature_side()

    def feature_side(self) -> int:
        """Side of the last feature map; ValueError when the network would shrink it to nothing."""
        side = IMAGE_SIZE
        shrink = 0 if self.padding == "same" else self.kernel_size - 1
        layout = f"filters={','.join(map(str, self.filters))} with kernel_size={self.kernel_size}, padding={self.padding}"
        for block, _ in enumerate(self.filters, start=1):
            side -= shrink * self.convs_per_block
            if side < 1:
                raise ValueError(
                    f"{layout}, convs_per_block={self.convs_per_block}: the feature map shrinks to nothing in "
                    f"block {block}; use padding=same, a smaller kernel or fewer blocks"
                )
            side //= 2  # the block's 2x2 max-pool
            if side < 1:
                raise ValueError(f"{layout}: the pooling of block {block} leaves nothing; use fewer blocks")
        return side

    def step_lr(self) -> float:
        """The optimizer's peak learning rate at this batch size (see `lr`)."""
        ratio = self.batch_size / LR_BATCH
        return self.lr * (ratio if self.optimizer == "sgd" else ratio**0.5)

    def to_flat(self) -> dict[str, typing.Any]:
        """Scalars only: tuples become "64,128". The inverse of `from_flat`."""
        return {f.name: _format(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_flat(cls, values: typing.Mapping[str, typing.Any], base: "Config | None" = None) -> "Config":
        """`base` (default: the defaults) with `values` applied; text is parsed by each field's type."""
        known = field_types()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}")
        parsed = {k: parse_value(k, v, known[k]) for k, v in values.items()}
        return replace(base or cls(), **parsed)


def field_types() -> dict[str, typing.Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def parse_value(key: str, value: typing.Any, kind: typing.Any) -> typing.Any:
    """Turn text or a loosely typed value (a numpy scalar from Optuna, "1e-3" from the CLI) into `kind`."""
    try:
        if kind == tuple[int, ...]:
            if isinstance(value, str):
                text = value.replace(" ", "")  # "" stays the empty tuple (Config then refuses it); "64,,128" is a typo
                return tuple(int(v) for v in text.split(",")) if text else ()
            return tuple(int(v) for v in value)
        if kind is int:
            return as_int(value)
        if kind is bool:  # True, numpy.bool_, "true" or "yes" from the CLI (as search.run's keys), Parquet's text
            return parse_bool(key, str(value))
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        accepted = {tuple[int, ...]: "comma-separated integers, e.g. 64,128", int: "an integer", float: "a number",
                    bool: "true or false"}
        raise ValueError(f"{key}={value!r}: expected {accepted.get(kind, kind)}") from None


def _format(value: typing.Any) -> typing.Any:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: choose one of {', '.join(choices)}")


PRESETS: Registry[Config] = Registry(
    "preset",
    {
        # The report's final network and recipe (its Table 1): BN after every conv, augmentation on.
        "seed": Config(),
        # The report's baseline: the same network without BatchNorm, trained without augmentation.
        "baseline": Config(batchnorm="none", strength=0.0),
    },
)
preset = PRESETS.lookup
