"""Network shape: filters and blocks, convs per block, shortcuts, BatchNorm placement, head, dropout.

Padding is "same" here so that three-block networks fit in 28x28 inputs.
"""

from ray import tune

PRESET = "seed"
PARAMS = {
    "padding": "same",
    "filters": tune.choice(["32,64", "48,96", "64,128", "96,192", "128,256", "32,64,128", "48,96,192", "64,128,256"]),
    "convs_per_block": tune.randint(1, 4),  # 1..3
    "kernel_size": tune.choice([3, 5]),
    "residual": tune.choice([False, True]),
    "batchnorm": tune.choice(["none", "every", "block", "single"]),
    "bn_order": tune.choice(["post", "pre"]),
    "activation": tune.choice(["relu", "gelu", "silu"]),
    "dense": tune.choice([0, 128, 256, 512]),  # 0: global-average-pool head
    "block_dropout": tune.uniform(0.0, 0.5),
    "dense_dropout": tune.uniform(0.0, 0.6),
}
