"""Everything at once: architecture, augmentation, regularization, optimizer, schedule, batch size."""

from ray import tune

from spaces import architecture, augmentation, regularization

PRESET = "seed"
PARAMS = {
    **architecture.PARAMS,
    **augmentation.PARAMS,
    **regularization.PARAMS,
    "optimizer": tune.choice(["adam", "adamw", "sgd"]),
    "lr": tune.loguniform(1e-4, 3e-1),  # wide: SGD wants ~0.05, Adam ~1e-3
    "schedule": tune.choice(["constant", "cosine", "onecycle"]),
    "batch_size": tune.choice([64, 128, 256, 512]),
}
