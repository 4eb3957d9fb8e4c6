"""Benchmarks: ``python -m bench`` runs every ``bench/bench_*.py``; ``python -m bench NAME`` one.

Figures are medians of interleaved rounds, printed as ratios against baselines
measured in the same run, and written to ``bench/results/<name>.json`` and ``.md``.
Benchmarks report; they never fail the build (tests assert, benchmarks measure).
"""

from __future__ import annotations

from ._harness import Bench, Load, Result, Target, calibrate, median, ratio

__all__ = ["Bench", "Load", "Result", "Target", "calibrate", "median", "ratio"]
