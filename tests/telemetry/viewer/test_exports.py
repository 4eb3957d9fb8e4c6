"""telemetry.viewer's curated __all__ is sorted and complete."""

from __future__ import annotations

import types

import telemetry.viewer as viewer


def test_all_is_sorted_and_unique() -> None:
    """Sorted, no duplicates."""
    assert list(viewer.__all__) == sorted(set(viewer.__all__))


def test_all_lists_every_public_name() -> None:
    """Every public non-module attribute is exported, and every export exists."""
    public = {n for n, v in vars(viewer).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public == set(viewer.__all__)
