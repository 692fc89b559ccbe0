"""The seed network and augmentation fixed; dropout, weight decay, label smoothing, random erasing,
the weight average."""

from ray import tune

PRESET = "seed"
PARAMS = {
    "optimizer": "adamw",  # decoupled weight decay: Adam's L2 is scaled away by its normaliser
    "block_dropout": tune.uniform(0.0, 0.5),
    "dense_dropout": tune.uniform(0.0, 0.7),
    "weight_decay": tune.loguniform(1e-5, 1e-1),
    "label_smoothing": tune.uniform(0.0, 0.2),
    "erasing": tune.uniform(0.0, 1.0),  # probability at strength 1
    # Off, or an average over 1, 2 or 4 epochs: the span the old per-step decay 0.999 covered on the
    # full 54,000 images at batch 64 to 512 (1.2 to 9.5 epochs), now the same at every batch size
    # and subset. Longer would reach back into the high-lr part of a 12- to 30-epoch run.
    "ema_epochs": tune.choice([0.0, 1.0, 2.0, 4.0]),
}
