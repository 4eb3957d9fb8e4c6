"""Fixtures for the resilience tests: a real redis-server for the ``redis`` marker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.redis_server import redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server started for this session on a free loopback port."""
    with redis_server() as server:
        yield server.url
