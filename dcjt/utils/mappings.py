"""Nested mappings (configuration trees)."""

from __future__ import annotations

import copy


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: nested mappings merge key by key, anything else
    (lists included) is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        both_dicts = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = deep_merge(out[k], v) if both_dicts else copy.deepcopy(v)
    return out
