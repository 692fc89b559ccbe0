"""The seed network fixed; how much augmentation, of which kind, and the learning rate.

Effective magnitude = strength x knob, so strength scales the whole mix and each knob its part.
"""

from ray import tune

PRESET = "seed"
PARAMS = {
    "strength": tune.uniform(0.0, 1.0),
    "rotation": tune.uniform(0.0, 30.0),  # degrees at strength 1
    "shift": tune.uniform(0.0, 0.2),  # fraction of the side
    "shear": tune.uniform(0.0, 20.0),  # degrees
    "zoom": tune.uniform(0.0, 0.2),  # fraction
    "flip": tune.uniform(0.0, 1.0),  # probability
    "erasing": tune.uniform(0.0, 0.5),  # probability
    "lr": tune.loguniform(1e-4, 3e-3),  # Adam, per 64 images (model.Config.lr)
}
