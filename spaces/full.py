"""Everything at once: architecture, augmentation, regularization, schedule, batch size; AdamW.

One optimizer, on purpose: learning rates that suit AdamW diverge or crawl with SGD (and the
other way round), and a flat search space cannot tie a range to an optimizer. AdamW with
decoupled weight decay trained the best small networks in the H200 runs of 2026-11-26. The range is
per 64 images (model.Config.lr): at batch 512 AdamW steps at up to 4e-3 * sqrt(8) = 0.011.
"""

from ray import tune

from spaces import architecture, augmentation, regularization
from spaces.compose import compose

PRESET = "seed"
PARAMS = compose(
    architecture.PARAMS,
    augmentation.PARAMS,
    regularization.PARAMS,
    resolve={
        "block_dropout": tune.uniform(0.0, 0.5),  # architecture's and regularization's ranges, joined
        "dense_dropout": tune.uniform(0.0, 0.7),
        "erasing": tune.uniform(0.0, 0.5),  # with strength up to 1 and the geometric knobs on top
        "lr": tune.loguniform(2e-4, 4e-3),  # AdamW, per 64 images (augmentation's range is Adam's at batch 64)
    },
) | {
    "schedule": tune.choice(["constant", "cosine", "onecycle"]),  # rungs judge each schedule among its own
    "batch_size": tune.choice([64, 128, 256, 512]),
    "mirror_tta": True,  # costs one more forward pass at evaluation only, and was never worse
    "bn_bias_lr": 16.0,  # +0.45 points at quarter width, 7 seeds (docs/model.md); free
}
