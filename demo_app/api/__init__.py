"""The JSON API, one blueprint per path of the demo (catalog, account, progress, uploads, stream, meta)."""

from __future__ import annotations

from flask import Blueprint

from .account import bp as account
from .catalog import bp as catalog
from .meta import bp as meta
from .progress import bp as progress
from .stream import bp as stream
from .uploads import bp as uploads

BLUEPRINTS: tuple[Blueprint, ...] = (account, catalog, meta, progress, stream, uploads)

__all__ = ["BLUEPRINTS"]
