"""``python -m bench [NAME ...]``: run the benchmark modules (all of them by default)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmark modules (``bench/bench_<name>.py``), sorted."""
    here = [str(Path(__file__).resolve().parent)]
    return sorted(m.name.removeprefix(PREFIX) for m in pkgutil.iter_modules(here)
                  if m.name.startswith(PREFIX))


def load(name: str) -> Callable[[], object]:
    """The ``main()`` of ``bench/bench_<name>.py``."""
    module = importlib.import_module(f"{__package__ or 'bench'}.{PREFIX}{name}")
    entry = getattr(module, "main", None)
    if not callable(entry):
        raise SystemExit(f"bench/{PREFIX}{name}.py has no main()")
    return cast(Callable[[], object], entry)


def main(argv: Sequence[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(names)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in args.names if n.removeprefix(PREFIX) not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    for name in [n.removeprefix(PREFIX) for n in args.names] or names:
        print(f"== bench {name}", flush=True)
        load(name)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
