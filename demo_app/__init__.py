"""The Shockproof demo: a small streaming service guarded end to end.

``create_app(DemoConfig(...))`` builds the Flask app; ``python -m demo_app`` runs the
whole stack (upstream catalog service, app, trace viewer). See ``demo_app/README.md``.
"""

from __future__ import annotations

from .app import create_app
from .config import DemoConfig

__all__ = ["DemoConfig", "create_app"]
