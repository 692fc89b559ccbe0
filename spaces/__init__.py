"""Search spaces as pure data: each module names a starting preset and Ray Tune domains (or fixed
values) over the flat `model.Config` keys."""

from __future__ import annotations

from types import ModuleType

from model.registry import Registry
from spaces import architecture, augmentation, baseline, full, regularization, seed

SPACES: Registry[ModuleType] = Registry(
    "space",
    {
        "seed": seed,
        "baseline": baseline,
        "augmentation": augmentation,
        "architecture": architecture,
        "regularization": regularization,
        "full": full,
    },
)
get = SPACES.lookup
