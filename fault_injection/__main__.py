"""``python -m fault_injection`` and the ``shockproof-faults`` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._cli import main as _main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shockproof-faults``; returns the exit code (0 ok, 1 failed, 2 usage, 3 unreachable, 4 auth)."""
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
