"""Suite-wide fixtures: every test starts with resilience's process-wide state fresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import resilience
from resilience import _classify
from resilience.testing import isolated


@pytest.fixture(autouse=True)
def _fresh_resilience() -> Iterator[None]:
    """Settings, hooks, interceptors and the classification registry are restored after each test."""
    with isolated():
        yield
    _classify.reset_registry()


@pytest.fixture
def events() -> Iterator[list[object]]:
    """Every resilience event emitted during the test, in order."""
    seen: list[object] = []
    resilience.subscribe(seen.append)
    yield seen
    resilience.unsubscribe(seen.append)
