"""Fingerprints: type + normalised frames, stable across runs and line drift."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import resilience
from resilience import Retry, guard
from resilience.testing import waits_off
from telemetry import fingerprint
from telemetry._fingerprint import _normalised_frames, type_name

MODULE = """
def helper(x):
{pad}    return 1 / x


def compute(x):
    return helper(x)
"""


def load(tmp_path: Path, name: str, padding: int) -> ModuleType:
    """Write and import module ``name`` with ``padding`` blank lines inside ``helper``."""
    path = tmp_path / f"{name}_{padding}" / f"{name}.py"
    path.parent.mkdir()
    path.write_text(MODULE.format(pad="\n" * padding))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failure(fn: object, *args: object) -> BaseException:
    """The exception ``fn(*args)`` raises."""
    try:
        fn(*args)  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def boom() -> None:
    raise ValueError("boom 1")


def other_boom() -> None:
    raise ValueError("boom 2")


def test_fingerprint_is_sixteen_hex_digits() -> None:
    """A fingerprint is 16 lowercase hex characters."""
    fp = fingerprint(failure(boom))
    assert len(fp) == 16
    assert int(fp, 16) >= 0
    assert fp == fp.lower()


def test_same_path_same_fingerprint_whatever_the_message() -> None:
    """Two failures on the same path group together, even with different messages."""
    assert fingerprint(failure(boom)) == fingerprint(failure(boom))


def test_different_functions_differ() -> None:
    """The same type raised in another function is another group."""
    assert fingerprint(failure(boom)) != fingerprint(failure(other_boom))


def test_different_types_differ() -> None:
    """The exception type is part of the fingerprint."""
    def raises_type_error() -> None:
        raise TypeError("x")

    def raises_value_error() -> None:
        raise ValueError("x")

    assert _normalised_frames(failure(raises_type_error).__traceback__)[-1].endswith("raises_type_error")
    assert fingerprint(failure(raises_type_error)) != fingerprint(failure(raises_value_error))


def test_line_drift_within_a_function_keeps_the_fingerprint(tmp_path: Path) -> None:
    """Blank lines added inside a function do not change the fingerprint."""
    before = load(tmp_path, "drifting", 0)
    after = load(tmp_path, "drifting", 5)
    assert fingerprint(failure(before.compute, 0)) == fingerprint(failure(after.compute, 0))


def test_frames_carry_no_line_numbers_or_paths(tmp_path: Path) -> None:
    """Frames are module:function names only."""
    module = load(tmp_path, "namesonly", 0)
    frames = _normalised_frames(failure(module.compute, 0).__traceback__)
    assert frames[-2:] == ["namesonly:compute", "namesonly:helper"]
    assert not any(str(tmp_path) in f or ".py" in f for f in frames)


def test_fingerprint_is_stable_across_processes(tmp_path: Path) -> None:
    """Separate interpreter runs (different hash seeds) compute the same fingerprint."""
    script = tmp_path / "fp_run.py"
    script.write_text(textwrap.dedent("""
        from telemetry import fingerprint
        def f():
            raise KeyError("k")
        try:
            f()
        except KeyError as e:
            print(fingerprint(e))
    """))
    root = Path(__file__).resolve().parents[2]
    out = {subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                          cwd=root, env={**os.environ, "PYTHONHASHSEED": seed,
                                         "PYTHONPATH": str(root)}).stdout.strip()
           for seed in ("1", "2")}
    assert len(out) == 1
    assert len(out.pop()) == 16


def test_resilience_layers_do_not_change_the_fingerprint(events: list[object]) -> None:
    """The same failure through guard's fast path and its instrumented path groups together."""
    @guard("fp.site", retry=Retry(attempts=1))
    def call() -> None:
        raise ConnectionError("down")

    instrumented = failure(call)  # the ``events`` fixture subscribes: instrumented path
    resilience.unsubscribe(events.append)
    with waits_off():
        fast = failure(call)
    assert fingerprint(instrumented) == fingerprint(fast)


def test_where_it_is_taken_does_not_matter() -> None:
    """Taken inside the guarded call or at the top of the request: the same fingerprint."""
    def inner() -> None:
        raise OSError(5, "io")

    def middle(catch: bool) -> str:
        if catch:
            try:
                inner()
            except OSError as exc:
                return fingerprint(exc)  # low: the traceback holds only middle and inner
        inner()
        return ""

    def run(catch: bool) -> str:
        return middle(catch)

    low = run(True)
    try:
        run(False)
    except OSError as exc:
        high = fingerprint(exc)  # high: the traceback holds the whole path
    assert low == high


def test_fingerprint_is_remembered_on_the_exception() -> None:
    """Computed once per exception object: later tracebacks do not change it."""
    exc = failure(boom)
    first = fingerprint(exc)
    with pytest.raises(ValueError) as again:
        raise exc
    assert fingerprint(again.value) == first


def test_error_type_names() -> None:
    """Builtins by bare name, others fully qualified (OpenTelemetry's error.type)."""
    assert type_name(ZeroDivisionError()) == "ZeroDivisionError"
    assert type_name(resilience.CircuitOpenError) == "resilience._errors.CircuitOpenError"


def test_recursion_collapses() -> None:
    """A recursion's repeated frames count once: depth does not split groups."""
    def recurse(n: int) -> None:
        if n == 0:
            raise RecursionError("deep")
        recurse(n - 1)

    assert fingerprint(failure(recurse, 3)) == fingerprint(failure(recurse, 30))


@pytest.mark.parametrize("exc_type", [ValueError, KeyError, OSError])
def test_exception_without_traceback_has_a_fingerprint(exc_type: type[BaseException]) -> None:
    """An exception never raised still gets a (type-only) fingerprint."""
    assert len(fingerprint(exc_type("x"))) == 16
