"""Fixtures for the proof tests: Hypothesis profiles, a real upstream behind a real chaos proxy,
telemetry writing to a real store, and fault injection switched off around every test.

Hypothesis profiles (applied to the chaos test only, never loaded globally, so the rest
of the suite keeps its own settings): ``proof-default`` (bounded, what ``make test``
runs) and ``chaos`` (deeper; selected with ``SHOCKPROOF_CHAOS_PROFILE=chaos``, which
``make chaos`` sets).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import fault_injection
import telemetry
from fault_injection.proxy import ChaosProxy
from tests.demo_app.servers import Server, start_upstream
from tests.telemetry.conftest import recorder

__all__ = ["StoreHandle", "chaos_settings", "recorder"]

PROFILE_ENV = "SHOCKPROOF_CHAOS_PROFILE"

settings.register_profile(
    "proof-default", max_examples=25, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "chaos", max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def deep_chaos() -> bool:
    """True when ``SHOCKPROOF_CHAOS_PROFILE=chaos`` asks for the deeper run."""
    return os.environ.get(PROFILE_ENV, "").strip() == "chaos"


def chaos_settings() -> settings:
    """The profile the chaos test runs under: ``chaos`` when asked for, else ``proof-default``."""
    return settings.get_profile("chaos" if deep_chaos() else "proof-default")


@pytest.fixture(autouse=True)
def _faults_off() -> Iterator[None]:
    """No armed rule, and no telemetry configuration, leaks into or out of a proof test."""
    fault_injection.disable()
    yield
    fault_injection.disable()
    telemetry.reset()


@pytest.fixture(scope="session")
def proof_upstream() -> Iterator[Server]:
    """The upstream catalog service: a real second process on a free loopback port."""
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture
def chaos_proxy(proof_upstream: Server) -> Iterator[ChaosProxy]:
    """A chaos proxy (in-process thread, real sockets) in front of the upstream."""
    proxy = ChaosProxy(f"127.0.0.1:{proof_upstream.port}", name="proof").start()
    yield proxy
    proxy.stop()


@dataclass(frozen=True)
class StoreHandle:
    """Where telemetry writes during a test: the store file and the captured log output."""

    path: Path
    logs: io.StringIO


@pytest.fixture
def telemetry_store(tmp_path: Path) -> Iterator[StoreHandle]:
    """Telemetry configured for this test: a real SQLite store in ``tmp_path``, logs captured."""
    logs = io.StringIO()
    path = tmp_path / "store" / "telemetry.db"
    telemetry.configure(service_name="proof", store=path, log_stream=logs)
    yield StoreHandle(path, logs)
    telemetry.reset()
