"""Experiment files: a Chaos Toolkit-compatible subset, parsed and checked strictly.

Every complaint names the field (``method[2].provider.arguments.rate``) and says
why; all of them are collected before :class:`ExperimentError` is raised. The
format is documented in ``fault_injection/experiments/README.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from ._experiment_tolerance import Tolerance, parse_tolerance
from ._plan import FaultInjectionError, PlanFieldError
from .proxy import InvalidToxic, Toxic

ActivityType = Literal["action", "probe"]

#: Shockproof's own activities (``provider: {type: shockproof, func: ...}``).
ACTION_FUNCS: Final = (
    "add_fault", "add_toxic", "clear_toxics", "halt_faults", "load", "remove_fault", "remove_toxic",
)
PROBE_FUNCS: Final = ("list_faults", "load", "proxy_status")
DEFAULTS: Final[Mapping[str, Any]] = {
    "app_url": "http://127.0.0.1:8000",
    "proxy_url": "http://127.0.0.1:8474",
    "data_dir": ".shockproof",
}
SECRET_KEYS: Final = re.compile(r"token|secret|password|authorization|cookie", re.IGNORECASE)
_TOP: Final = {
    "version", "title", "description", "tags", "contributions", "configuration",
    "steady-state-hypothesis", "method", "rollbacks", "extensions",
}
_UNSUPPORTED: Final = {
    "controls": "controls are not supported; Shockproof's progress and journal cover their use",
    "secrets": "use configuration with {type: env, key: NAME} (or --token/--token-file) instead",
    "runtime": "runtime settings are not supported",
}
_SUBST: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_PAUSE: Final = 3600.0


class ExperimentError(FaultInjectionError, ValueError):
    """An experiment file is invalid; ``errors`` lists every offending field and why."""

    def __init__(self, errors: Sequence[PlanFieldError]) -> None:
        self.errors: list[PlanFieldError] = list(errors)
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in self.errors))


# -- the model -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provider:
    """How an activity runs: an HTTP request, or one of Shockproof's functions."""

    type: Literal["http", "shockproof"]
    func: str = ""
    url: str = ""
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    arguments: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 5.0
    expected_status: int | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    """One action or probe of the hypothesis, the method or the rollbacks."""

    type: ActivityType
    name: str
    provider: Provider
    tolerance: Tolerance | None = None
    pause_before: float = 0.0
    pause_after: float = 0.0
    background: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Experiment:
    """A parsed experiment; ``raw`` is the file as written, with secrets redacted."""

    title: str
    description: str
    tags: tuple[str, ...]
    configuration: Mapping[str, Any]
    hypothesis_title: str
    probes: tuple[Activity, ...]
    method: tuple[Activity, ...]
    rollbacks: tuple[Activity, ...]
    raw: Mapping[str, Any]
    source: str = ""


# -- loading ---------------------------------------------------------------------------


def load_experiment(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None
) -> Experiment:
    """Read a JSON or YAML experiment file and check it (:class:`ExperimentError` if invalid)."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentError([_e("file", f"cannot read {where}: {exc}")]) from None
    try:
        data = json.loads(text) if where.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ExperimentError([_e("file", f"{where} is not valid {where.suffix.lstrip('.') or 'YAML'}: {exc}")]) from None
    return parse_experiment(data, overrides, environ=environ, source=str(where))


def parse_experiment(
    data: object,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "",
) -> Experiment:
    """Check an experiment given as data; ``overrides`` replace configuration values."""
    v = _Checker()
    if not isinstance(data, Mapping):
        raise ExperimentError([_e("experiment", "must be a mapping (an object with title, method, ...)")])
    for key in sorted(set(data) - _TOP):
        v.err(key, _UNSUPPORTED.get(key, f"unknown field (known: {', '.join(sorted(_TOP))})"))
    config = _configuration(v, data.get("configuration", {}), overrides or {}, os.environ if environ is None else environ)
    subst = _Substituter(v, config)
    title = v.text("title", data.get("title"), required=True)
    description = v.text("description", data.get("description", ""))
    tags = tuple(v.strings("tags", data.get("tags", [])))
    hyp_title, probes = _hypothesis(v, subst, data.get("steady-state-hypothesis"))
    method = _activities(v, subst, "method", data.get("method"), allow_background=True, required=True)
    rollbacks = _activities(v, subst, "rollbacks", data.get("rollbacks", []), allow_background=False)
    for i, act in enumerate(rollbacks):
        if act.type != "action":
            v.err(f"rollbacks[{i}].type", "rollbacks hold actions only")
    if v.errors:
        raise ExperimentError(v.errors)
    return Experiment(
        title, description, tags, config, hyp_title, probes, method, rollbacks, redact(dict(data)), source
    )


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: ("***" if SECRET_KEYS.search(str(k)) and not _is_env_ref(v) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _is_env_ref(value: object) -> bool:
    return isinstance(value, Mapping) and value.get("type") == "env"


def _e(field_: str, message: str) -> PlanFieldError:
    return PlanFieldError(field=field_, message=message)


class _Checker:
    """Collects errors; small typed readers that report and return a safe value."""

    def __init__(self) -> None:
        self.errors: list[PlanFieldError] = []

    def err(self, where: str, message: str) -> None:
        self.errors.append(_e(where, message))

    def text(self, where: str, value: object, *, required: bool = False) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.err(where, "required, a non-empty string" if required else "must be a string")
            return ""
        return value

    def strings(self, where: str, value: object) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            self.err(where, "must be a list of strings")
            return []
        return list(value)

    def number(self, where: str, value: object, low: float, high: float, *, integer: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer and not float(value).is_integer():  # type: ignore[arg-type]
            ok = False
        if not ok or not low <= value <= high:  # type: ignore[operator]
            kind = "an integer" if integer else "a number"
            self.err(where, f"must be {kind} from {low:g} to {high:g}; got {value!r}")
            return low
        return float(value)  # type: ignore[arg-type]

    def mapping(self, where: str, value: object, known: set[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.err(where, "must be a mapping")
            return {}
        for key in sorted(set(value) - (known if known is not None else set(value))):
            self.err(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(known or ()))})")
        return value


# -- configuration ---------------------------------------------------------------------


def _configuration(
    v: _Checker, raw: object, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    config: dict[str, Any] = dict(DEFAULTS)
    for key, value in v.mapping("configuration", raw).items():
        where = f"configuration.{key}"
        if _is_env_ref(value):
            extra = set(value) - {"type", "key", "default"}
            if extra or not isinstance(value.get("key"), str):
                v.err(where, "an env value is {type: env, key: NAME, default: optional}")
            elif value["key"] in environ:
                config[key] = environ[value["key"]]
            elif "default" in value:
                config[key] = value["default"]
            else:
                v.err(where, f"environment variable {value['key']} is not set and there is no default")
        elif isinstance(value, Mapping):
            v.err(where, "must be a literal or {type: env, key: NAME}")
        else:
            config[key] = value
    config.update(overrides)
    for key in ("app_url", "proxy_url"):
        if not isinstance(config[key], str) or not re.match(r"https?://", config[key]):
            v.err(f"configuration.{key}", f"must be an http(s) URL; got {config[key]!r}")
    return config


class _Substituter:
    """Replaces ``${name}`` with configuration values throughout an activity."""

    def __init__(self, v: _Checker, config: Mapping[str, Any]) -> None:
        self.v, self.config = v, config

    def __call__(self, where: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self(f"{where}.{k}", item) for k, item in value.items()}
        if isinstance(value, list):
            return [self(f"{where}[{i}]", item) for i, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        whole = _SUBST.fullmatch(value)
        if whole and whole.group(1) in self.config:
            return self.config[whole.group(1)]
        return _SUBST.sub(lambda m: self._one(where, m.group(1)), value)

    def _one(self, where: str, name: str) -> str:
        if name not in self.config:
            self.v.err(where, f"unknown configuration key ${{{name}}}")
            return ""
        return str(self.config[name])


# -- activities ------------------------------------------------------------------------


def _hypothesis(v: _Checker, subst: _Substituter, raw: object) -> tuple[str, tuple[Activity, ...]]:
    where = "steady-state-hypothesis"
    if raw is None:
        v.err(where, "required: {title, probes}")
        return "", ()
    hyp = v.mapping(where, raw, {"title", "probes"})
    title = v.text(f"{where}.title", hyp.get("title"), required=True)
    probes = _activities(v, subst, f"{where}.probes", hyp.get("probes"), allow_background=False, required=True)
    for i, probe in enumerate(probes):
        if probe.type != "probe":
            v.err(f"{where}.probes[{i}].type", "the hypothesis holds probes only")
        elif probe.tolerance is None:
            v.err(f"{where}.probes[{i}].tolerance", "required: what the probe's output must satisfy")
    return title, probes


def _activities(
    v: _Checker, subst: _Substituter, where: str, raw: object, *, allow_background: bool, required: bool = False
) -> tuple[Activity, ...]:
    if raw is None or (required and raw == []):
        if required:
            v.err(where, "required: a non-empty list of activities")
        return ()
    if not isinstance(raw, list):
        v.err(where, "must be a list of activities")
        return ()
    out = [_activity(v, subst, f"{where}[{i}]", item, allow_background) for i, item in enumerate(raw)]
    return tuple(a for a in out if a is not None)


_ACTIVITY_KEYS: Final = {"type", "name", "provider", "tolerance", "pauses", "background", "controls", "ref"}


def _activity(v: _Checker, subst: _Substituter, where: str, raw: object, allow_background: bool) -> Activity | None:
    if not isinstance(raw, Mapping):
        v.err(where, "must be a mapping: {type, name, provider, ...}")
        return None
    act = v.mapping(where, raw, _ACTIVITY_KEYS - {"controls", "ref"})
    kind = act.get("type")
    if kind not in ("action", "probe"):
        v.err(f"{where}.type", f"must be 'action' or 'probe'; got {kind!r}")
    name = v.text(f"{where}.name", act.get("name"), required=True)
    provider = _provider(v, f"{where}.provider", subst(f"{where}.provider", act.get("provider")), kind == "probe")
    tolerance = None
    if "tolerance" in act:
        is_http = provider is not None and provider.type == "http"
        tolerance = parse_tolerance(v, f"{where}.tolerance", subst(f"{where}.tolerance", act["tolerance"]), is_http)
        if kind != "probe":
            v.err(f"{where}.tolerance", "only probes have a tolerance")
    before, after = _pauses(v, f"{where}.pauses", act.get("pauses", {}))
    background = act.get("background", False)
    if not isinstance(background, bool) or (background and not allow_background):
        v.err(f"{where}.background", "true or false, and only in the method")
    if provider is None or kind not in ("action", "probe"):
        return None
    return Activity(kind, name, provider, tolerance, before, after, bool(background), dict(act))


def _pauses(v: _Checker, where: str, raw: object) -> tuple[float, float]:
    pauses = v.mapping(where, raw, {"before", "after"})
    return tuple(  # type: ignore[return-value]
        v.number(f"{where}.{k}", pauses.get(k, 0), 0, _MAX_PAUSE) for k in ("before", "after")
    )


def _provider(v: _Checker, where: str, raw: object, is_probe: bool) -> Provider | None:
    if not isinstance(raw, Mapping) or "type" not in raw:
        v.err(where, "required: a mapping with a type ('http' or 'shockproof')")
        return None
    if raw["type"] == "http":
        return _http_provider(v, where, raw)
    if raw["type"] == "shockproof":
        return _shockproof_provider(v, where, raw, is_probe)
    v.err(f"{where}.type", "only 'http' and 'shockproof' providers are supported "
          "(python and process providers would run arbitrary code)")
    return None


_HTTP_KEYS: Final = {"type", "url", "method", "headers", "arguments", "timeout", "expected_status"}


def _http_provider(v: _Checker, where: str, raw: Mapping[str, Any]) -> Provider:
    raw = v.mapping(where, raw, _HTTP_KEYS)
    url = v.text(f"{where}.url", raw.get("url"), required=True)
    if url and not re.match(r"(https?://|/)", url):
        v.err(f"{where}.url", "must be an http(s) URL or a path starting with / (joined to app_url)")
    method = raw.get("method", "GET")
    if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        v.err(f"{where}.method", f"must be an HTTP method in capitals; got {method!r}")
    headers = v.mapping(f"{where}.headers", raw.get("headers", {}))
    if not all(isinstance(h, str) for h in headers.values()):
        v.err(f"{where}.headers", "header values must be strings")
    timeout = raw.get("timeout", 5.0)
    if isinstance(timeout, list) and len(timeout) == 2:  # Chaos Toolkit's [connect, read]
        timeout = sum(t for t in timeout if isinstance(t, int | float))
    expected = raw.get("expected_status")
    if expected is not None:
        v.number(f"{where}.expected_status", expected, 100, 599, integer=True)
    return Provider(
        "http", url=url, method=str(method), headers=dict(headers), arguments=raw.get("arguments") or {},
        timeout=v.number(f"{where}.timeout", timeout, 0.001, 120), expected_status=expected,
    )


def _shockproof_provider(v: _Checker, where: str, raw: Mapping[str, Any], is_probe: bool) -> Provider | None:
    raw = v.mapping(where, raw, {"type", "func", "arguments"})
    func = raw.get("func")
    allowed = PROBE_FUNCS if is_probe else ACTION_FUNCS
    if not isinstance(func, str) or func not in allowed:
        what = "probe" if is_probe else "action"
        v.err(f"{where}.func", f"unknown {what} {func!r} (one of {', '.join(allowed)})")
        return None
    args = v.mapping(f"{where}.arguments", raw.get("arguments", {}))
    _ARG_CHECKS[func](v, f"{where}.arguments", args)
    return Provider("shockproof", func=func, arguments=dict(args))


# -- arguments of Shockproof's functions -----------------------------------------------


def _only(v: _Checker, where: str, args: Mapping[str, Any], known: set[str]) -> None:
    v.mapping(where, args, known | {"url"})
    _check_url(v, where, args)


def _check_url(v: _Checker, where: str, args: Mapping[str, Any]) -> None:
    if "url" in args and not (isinstance(args["url"], str) and re.match(r"https?://", args["url"])):
        v.err(f"{where}.url", "must be an http(s) URL")


def _check_add_fault(v: _Checker, where: str, args: Mapping[str, Any]) -> None:
    from ._io import parse_rule  # the plan file's rule format, shared with the CLI and the API

    _check_url(v, where, args)
    try:
        parse_rule({k: val for k, val in args.items() if k != "url"})
    except FaultInjectionError as exc:
        for problem in getattr(exc, "errors", [_e("", str(exc))]):
            v.err(f"{where}.{problem['field']}".rstrip("."), problem["message"])


def _check_add_toxic(v: _Checker, where: str, args: Mapping[str, Any]) -> None:
    _check_url(v, where, args)
    try:
        Toxic.from_dict({k: val for k, val in args.items() if k != "url"})
    except InvalidToxic as exc:
        v.err(f"{where}.{exc.field}", exc.reason)


def _check_named(key: str) -> Callable[[_Checker, str, Mapping[str, Any]], None]:
    def check(v: _Checker, where: str, args: Mapping[str, Any]) -> None:
        _only(v, where, args, {key})
        if key == "name":
            v.text(f"{where}.name", args.get("name"), required=True)
        elif key in args:
            v.text(f"{where}.{key}", args[key], required=True)

    return check


_LOAD_KEYS: Final = {"routes", "rate", "duration", "requests", "concurrency", "timeout"}
_ROUTE_KEYS: Final = {"path", "method", "json", "headers", "expect"}


def _check_load(v: _Checker, where: str, args: Mapping[str, Any]) -> None:
    _only(v, where, args, _LOAD_KEYS)
    routes = args.get("routes")
    if not isinstance(routes, list) or not routes:
        v.err(f"{where}.routes", "required: a non-empty list of paths or {path, method, json, headers, expect}")
        routes = []
    for i, route in enumerate(routes):
        _check_route(v, f"{where}.routes[{i}]", route)
    v.number(f"{where}.rate", args.get("rate"), 0.1, 1000)
    v.number(f"{where}.duration", args.get("duration"), 0.01, 600)
    if "requests" in args:
        v.number(f"{where}.requests", args["requests"], 1, 100_000, integer=True)
    v.number(f"{where}.concurrency", args.get("concurrency", 4), 1, 64, integer=True)
    v.number(f"{where}.timeout", args.get("timeout", 5), 0.01, 60)


def _check_route(v: _Checker, where: str, route: object) -> None:
    if isinstance(route, str):
        route = {"path": route}
    spec = v.mapping(where, route, _ROUTE_KEYS)
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        v.err(f"{where}.path", "required: a path starting with /")
    if spec.get("method", "GET") not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        v.err(f"{where}.method", "must be an HTTP method in capitals")
    expect = spec.get("expect", [])
    if not isinstance(expect, list) or not all(isinstance(s, int) and 100 <= s <= 599 for s in expect):
        v.err(f"{where}.expect", "must be a list of HTTP statuses counted as success")


def _check_none(v: _Checker, where: str, args: Mapping[str, Any]) -> None:
    _only(v, where, args, set())


_ARG_CHECKS: Final[Mapping[str, Callable[[_Checker, str, Mapping[str, Any]], None]]] = {
    "add_fault": _check_add_fault,
    "add_toxic": _check_add_toxic,
    "clear_toxics": _check_none,
    "halt_faults": _check_none,
    "list_faults": _check_none,
    "load": _check_load,
    "proxy_status": _check_none,
    "remove_fault": _check_named("id"),
    "remove_toxic": _check_named("name"),
}
