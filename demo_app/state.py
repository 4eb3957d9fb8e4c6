"""What one app instance holds: its configuration, stores, catalog client and circuits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from flask import current_app

from resilience import Circuit

from .catalog_client import CatalogClient
from .config import DemoConfig
from .storage import ProgressStore, UserStore
from .uploads_store import UploadStore

EXTENSION_KEY = "demo_app"
USER_COOKIE = "shockproof_user"


@dataclass(frozen=True, slots=True)
class DemoState:
    config: DemoConfig
    data_dir: Path
    media_dir: Path
    catalog: CatalogClient
    users: UserStore
    progress: ProgressStore
    uploads: UploadStore
    #: The circuits this app's guards use (``/readyz`` reports them).
    circuits: tuple[Circuit, ...]


def state() -> DemoState:
    """The state of the app handling the current request."""
    return cast(DemoState, current_app.extensions[EXTENSION_KEY])
