"""The report's final configuration as a single point: only the random seed varies (reproduction)."""

from ray import tune

PRESET = "seed"
PARAMS = {"seed": tune.randint(0, 10_000)}
