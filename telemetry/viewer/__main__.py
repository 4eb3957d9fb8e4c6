"""``python -m telemetry.viewer`` / ``shockproof-traces``: see :mod:`telemetry.viewer._cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._cli import main as _main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shockproof-traces`` with ``argv`` (default: the command line); returns the exit status."""
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
