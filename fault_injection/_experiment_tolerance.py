"""Probe tolerances: how they are written (checked strictly), and how an output is judged.

A tolerance is ``true``/``false`` (the probe ran without error), an HTTP status or a
list of them, or ``{type: range | regex | jsonpath, ...}`` over the status or a value
picked from the output by a small JSON path (``$.a[0].b``, ``[*]``, ``['key']``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol


class Checker(Protocol):
    """Where complaints go (the experiment parser's collector)."""

    def err(self, where: str, message: str) -> None: ...

    def mapping(self, where: str, value: object, known: set[str] | None = None) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Tolerance:
    """What a probe's output must satisfy.

    ``kind`` is ``bool`` (the probe ran without error == ``expected``), ``status``
    (the HTTP status is one of ``statuses``), ``range``, ``regex`` or ``jsonpath``.
    """

    kind: Literal["bool", "status", "range", "regex", "jsonpath"]
    raw: Any
    expected: bool = True
    statuses: tuple[int, ...] = ()
    low: float = 0.0
    high: float = 0.0
    pattern: str = ""
    target: Literal["status", "body"] = "body"
    path: str = ""
    expect: Any = None
    has_expect: bool = False



# -- tolerances ------------------------------------------------------------------------


def parse_tolerance(v: Checker, where: str, raw: object, is_http: bool) -> Tolerance | None:
    """Check a tolerance as written; ``is_http``: the probe is an HTTP one (status tolerances)."""
    if isinstance(raw, bool):
        return Tolerance("bool", raw, expected=raw)
    if isinstance(raw, int) or (isinstance(raw, list) and raw and all(isinstance(s, int) for s in raw)):
        statuses = (raw,) if isinstance(raw, int) else tuple(raw)
        if not is_http or not all(100 <= s <= 599 for s in statuses):
            v.err(where, "a status tolerance (an int or a list of ints) needs an http probe and statuses 100-599")
        return Tolerance("status", raw, statuses=statuses)
    if not isinstance(raw, Mapping):
        v.err(where, "must be true/false, an HTTP status, a list of statuses, or {type: range|regex|jsonpath, ...}")
        return None
    kind = raw.get("type")
    parse = _TOLERANCES.get(kind) if isinstance(kind, str) else None
    if parse is None:
        v.err(f"{where}.type", f"must be range, regex or jsonpath; got {kind!r}")
        return None
    return parse(v, where, raw, is_http)


def _tol_common(v: Checker, where: str, raw: Mapping[str, Any], extra: set[str], is_http: bool) -> tuple[str, str]:
    v.mapping(where, raw, {"type", "target", "path"} | extra)
    path = raw.get("path", "")
    if path:
        try:
            parse_json_path(path)
        except ValueError as exc:
            v.err(f"{where}.path", str(exc))
    target = raw.get("target", "body" if path or not is_http else "status")
    if target not in ("status", "body") or (target == "status" and (path or not is_http)):
        v.err(f"{where}.target", "must be 'status' (http probes, no path) or 'body'")
    return target, path


def _tol_range(v: Checker, where: str, raw: Mapping[str, Any], is_http: bool) -> Tolerance:
    target, path = _tol_common(v, where, raw, {"range"}, is_http)
    bounds = raw.get("range")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
            and bounds[0] <= bounds[1]):
        v.err(f"{where}.range", "required: [low, high] with low <= high")
        bounds = [0, 0]
    return Tolerance("range", dict(raw), low=bounds[0], high=bounds[1], target=target, path=path)  # type: ignore[arg-type]


def _tol_regex(v: Checker, where: str, raw: Mapping[str, Any], is_http: bool) -> Tolerance:
    target, path = _tol_common(v, where, {"target": "body", **raw}, {"pattern"}, is_http)
    pattern = raw.get("pattern")
    try:
        re.compile(pattern if isinstance(pattern, str) else "(")
    except re.error as exc:
        v.err(f"{where}.pattern", f"required: a valid regular expression ({exc})")
    return Tolerance("regex", dict(raw), pattern=str(pattern), target=target, path=path)  # type: ignore[arg-type]


def _tol_jsonpath(v: Checker, where: str, raw: Mapping[str, Any], is_http: bool) -> Tolerance:
    _tol_common(v, where, {"target": "body", **raw}, {"expect"}, is_http)
    if not raw.get("path"):
        v.err(f"{where}.path", "required: a JSON path such as $.items[0].id")
    return Tolerance(
        "jsonpath", dict(raw), path=str(raw.get("path", "")), expect=raw.get("expect"), has_expect="expect" in raw
    )


_TOLERANCES: Final[Mapping[str, Callable[[Checker, str, Mapping[str, Any], bool], Tolerance]]] = {
    "jsonpath": _tol_jsonpath,
    "range": _tol_range,
    "regex": _tol_regex,
}


# -- a small JSON path -----------------------------------------------------------------

_STEP: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(-?\d+)\]|\[\*\]|\.\*|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def parse_json_path(text: str) -> tuple[str | int | None, ...]:
    """``$.a.b[0][*]['c d']`` -> ``("a", "b", 0, None, "c d")`` (None = every item)."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError("a JSON path starts with $ (e.g. $.items[0].id)")
    steps: list[str | int | None] = []
    pos = 1
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read the JSON path at {text[pos:]!r} (use .key, [n], [*], ['key'])")
        key, index, quoted, dquoted = match.groups()
        if index is not None:
            steps.append(int(index))
        elif match.group(0) in ("[*]", ".*"):
            steps.append(None)
        else:
            steps.append(next(part for part in (key, quoted, dquoted) if part is not None))
        pos = match.end()
    return tuple(steps)


def select(value: Any, path: str) -> list[Any]:
    """Every value at ``path`` in ``value`` (empty when nothing matches)."""
    found = [value]
    for step in parse_json_path(path):
        nxt: list[Any] = []
        for item in found:
            if step is None:
                nxt.extend(item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else [])
            elif _has(item, step):
                nxt.append(item[step])
        found = nxt
    return found


def _has(item: Any, step: str | int) -> bool:
    if isinstance(step, int):
        return isinstance(item, list) and -len(item) <= step < len(item)
    return isinstance(item, Mapping) and step in item


# -- judging an output -------------------------------------------------------------------------------


def tolerance_met(tolerance: Tolerance, output: Any, failed: bool) -> bool:
    """Whether a probe's ``output`` satisfies ``tolerance`` (``failed``: the probe raised)."""
    if tolerance.kind == "bool":
        return (not failed) == tolerance.expected
    if failed:
        return False
    if tolerance.kind == "status":
        return isinstance(output, dict) and output.get("status") in tolerance.statuses
    values = _values(tolerance, output)
    if tolerance.kind == "range":
        return bool(values) and all(_in_range(v, tolerance.low, tolerance.high) for v in values)
    if tolerance.kind == "regex":
        return any(re.search(tolerance.pattern, v if isinstance(v, str) else _text(v)) for v in values)
    if tolerance.has_expect:  # Chaos Toolkit's rule: one match is compared alone, several as a list
        return bool(values) and (values[0] if len(values) == 1 else values) == tolerance.expect
    return any(v not in (None, False, "", [], {}) for v in values)


def _values(tolerance: Tolerance, output: Any) -> list[Any]:
    is_http = isinstance(output, dict) and "status" in output and "body" in output
    if tolerance.target == "status" and is_http:
        return [output["status"]]
    document = output["body"] if is_http else output
    return select(document, tolerance.path) if tolerance.path else [document]


def _in_range(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
