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
    "ema": tune.choice([0.0, 0.999]),  # off, or an average over ~1,000 steps
}
