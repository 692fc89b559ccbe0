"""registry.Registry: the one lookup behind spaces, presets and budgets."""

from __future__ import annotations

import dataclasses

import pytest

from model.registry import Registry


def test_lookup_gives_the_entry_or_one_line_naming_the_choices():
    colours = Registry("colour", {"red": 1, "green": 2})
    assert colours.lookup("green") == 2
    with pytest.raises(ValueError, match=r"^unknown colour 'blue'; choose one of red, green$"):
        colours.lookup("blue")


def test_it_reads_as_a_mapping_in_the_order_given():
    colours = Registry("colour", {"red": 1, "green": 2})
    assert list(colours) == ["red", "green"] and dict(colours.items()) == {"red": 1, "green": 2}
    assert colours["red"] == 1 and "green" in colours and "blue" not in colours and len(colours) == 2
    with pytest.raises(KeyError):
        colours["blue"]  # the mapping's own lookup keeps the mapping contract
    with pytest.raises(dataclasses.FrozenInstanceError):
        colours.kind = "flavour"
