"""Search spaces as pure data: each module names a starting preset and Ray Tune domains (or fixed
values) over the flat `model.Config` keys."""

from __future__ import annotations

from types import ModuleType

from spaces import architecture, augmentation, baseline, full, regularization, seed

SPACES: dict[str, ModuleType] = {
    "seed": seed,
    "baseline": baseline,
    "augmentation": augmentation,
    "architecture": architecture,
    "regularization": regularization,
    "full": full,
}


def get(name: str) -> ModuleType:
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; choose one of {', '.join(SPACES)}")
    return SPACES[name]
