"""Helpers shared by the demo tests: test configurations, problem bodies, file listings."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask

from demo_app import DemoConfig
from demo_app.state import EXTENSION_KEY, DemoState

_names = itertools.count()
MakeApp = Callable[..., Flask]


def config_for(data_dir: Path, upstream_url: str, **overrides: Any) -> DemoConfig:
    """A test configuration: no telemetry, no fault API, a circuit name of its own."""
    base = DemoConfig(data_dir=data_dir, upstream_url=upstream_url, telemetry=False,
                      fault_control=False, circuit_name=f"catalog-test-{next(_names)}",
                      upstream_timeout=5.0, catalog_deadline=10.0)
    return replace(base, **overrides)


def demo_state(app: Flask) -> DemoState:
    found: DemoState = app.extensions[EXTENSION_KEY]
    return found


def problem(response: Any) -> dict[str, Any]:
    """The problem+json body of ``response`` (asserting the media type and core members)."""
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json(force=True)
    assert {"type", "title", "status", "detail", "instance", "error_id", "trace_id", "kind"} <= set(body)
    assert body["status"] == response.status_code
    return body


def files_under(root: Path) -> list[str]:
    """Every regular file below ``root`` (relative paths, sorted)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
