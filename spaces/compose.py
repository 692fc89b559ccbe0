"""Composing spaces explicitly: a key two parts both set is an error unless the composition says
which value wins (a plain dict merge would silently keep the last part's range)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def compose(*parts: Mapping[str, Any], resolve: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The union of `parts`; every key that more than one part sets must be given in `resolve`,
    whose value is taken (a key only `resolve` names is added too)."""
    resolve = dict(resolve or {})
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key in merged and key not in resolve:
                raise ValueError(f"{key} is set by two parts of the space; say which value wins in resolve=")
            merged[key] = value
    return {**merged, **resolve}
