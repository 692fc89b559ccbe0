"""Every search space samples only configurations that build; composition refuses silent overrides."""

from __future__ import annotations

import numpy as np
import pytest
from ray.tune.search.sample import Domain

import spaces
from model import build, count_parameters
from model.config import Config, preset
from spaces.compose import compose

DRAWS = 200


def _draw(space, rng: np.random.RandomState) -> dict:
    return {k: (v.sample(random_state=rng) if isinstance(v, Domain) else v) for k, v in space.PARAMS.items()}


@pytest.mark.parametrize("name", list(spaces.SPACES))
def test_every_space_samples_valid_networks(name):
    space, rng = spaces.get(name), np.random.RandomState(0)
    base = preset(space.PRESET)
    counts = set()
    for _ in range(DRAWS):
        cfg = Config.from_flat(_draw(space, rng), base=base)  # validates every field
        counts.add(count_parameters(build(cfg)))
    varies_shape = any(k in space.PARAMS for k in ("filters", "convs_per_block", "dense", "residual"))
    assert len(counts) > (10 if varies_shape else 0)
    if varies_shape:  # small and large networks alike: max_params= is what keeps a search small
        assert min(counts) < 300_000 and max(counts) > 1_000_000


def test_full_is_its_parts_with_every_conflict_resolved_explicitly():
    from spaces import architecture, augmentation, full, regularization

    for part in (architecture, augmentation, regularization):
        assert set(part.PARAMS) <= set(full.PARAMS)
    assert full.PARAMS["optimizer"] == "adamw"
    assert full.PARAMS["erasing"].upper == 0.5 and full.PARAMS["dense_dropout"].upper == 0.7


def test_composing_two_ranges_for_one_key_needs_a_decision():
    with pytest.raises(ValueError, match="erasing is set by two parts"):
        compose({"erasing": 0.1}, {"erasing": 0.2})
    assert compose({"erasing": 0.1}, {"erasing": 0.2}, resolve={"erasing": 0.3}) == {"erasing": 0.3}
