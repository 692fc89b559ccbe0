"""The report's baseline (no BatchNorm, no augmentation) as a single point: only the seed varies."""

from ray import tune

PRESET = "baseline"
PARAMS = {"seed": tune.randint(0, 10_000)}
