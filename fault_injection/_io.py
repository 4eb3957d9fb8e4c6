"""The schedule file: one format for plans, shared by the CLI, the control API and
Hypothesis. JSON or YAML, the same shape::

    version: 1
    seed: 42
    rules:
      - id: catalog-down            # optional: defaults to a hash of the rule
        site: "catalog.*"           # glob over site names
        fault: {kind: network, variant: reset}
        rate: 0.3                   # optional triggers: first, every, after, max_hits,
        ttl: 600                    #   for_seconds, ttl, only_flagged
    calls: {catalog.fetch: 20}      # optional: call counts `replay` previews
    test: "tests/x.py::test_y"      # optional: the test a failing plan came from

Parsing is strict (unknown keys, wrong types and out-of-range values are errors)
and every error names its field: ``rules[0].fault.variant: must be one of ...``.
Shape and types are checked by pydantic models, values by the plan types
themselves, so Python callers get the same messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as _PydanticError

from ._plan import Fault, FaultPlan, PlanError, PlanFieldError, Rule

Format = Literal["json", "yaml"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Logic(_Model):
    kind: Literal["logic"]
    exception: str = "ZeroDivisionError"
    message: str = ""


class _Validation(_Model):
    kind: Literal["validation"]
    field: str = "input"
    message: str = ""


class _Network(_Model):
    kind: Literal["network"]
    variant: str = "refused"
    message: str = ""


class _Io(_Model):
    kind: Literal["io"]
    errno: str | int
    message: str = ""


class _Latency(_Model):
    kind: Literal["latency"]
    seconds: float
    jitter: float = 0.0


class _HttpStatus(_Model):
    kind: Literal["http_status"]
    status: int
    retry_after: float | None = None
    message: str = ""


_FaultModel = Annotated[_Logic | _Validation | _Network | _Io | _Latency | _HttpStatus,
                        Field(discriminator="kind")]


class _RuleModel(_Model):
    id: str | None = None
    site: str
    fault: _FaultModel
    rate: float = 1.0
    first: int | None = None
    every: int | None = None
    after: int | None = None
    max_hits: int | None = None
    for_seconds: float | None = None
    ttl: float | None = None
    only_flagged: bool = False


class _PlanModel(_Model):
    version: Literal[1] = 1
    seed: int = 0
    rules: list[_RuleModel] = []
    calls: dict[str, Annotated[int, Field(ge=0, le=10_000_000)]] = {}
    test: str | None = None


@dataclass(frozen=True, slots=True)
class PlanFile:
    """A plan with what its file may say besides: call counts to replay and the source test."""

    plan: FaultPlan
    calls: Mapping[str, int] = field(default_factory=dict)
    test: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.plan.to_dict()
        if self.calls:
            out["calls"] = dict(self.calls)
        if self.test:
            out["test"] = self.test
        return out


# -- errors ---------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i > 0 and loc[i - 1] == "fault" and part in _KIND_TAGS:
            continue  # pydantic's union tag, not a field of the file
        else:
            out += f".{part}" if out else str(part)
    return out


_KIND_TAGS = frozenset({"logic", "validation", "network", "io", "latency", "http_status"})


def _from_pydantic(exc: _PydanticError, prefix: str = "") -> PlanError:
    errors = []
    for e in exc.errors(include_url=False):
        where = _path(tuple(e["loc"]))
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            where = f"{where}.kind" if where else "kind"
            message = "must be one of " + ", ".join(sorted(_KIND_TAGS))
        elif e["type"] == "extra_forbidden":
            message = "is not a known field"
        else:
            message = re.sub(r" or instance of _\w+", "", e["msg"])
        errors.append(PlanFieldError(field=where or "(plan)", message=message))
    return PlanError(errors).prefixed(prefix) if prefix else PlanError(errors)


# -- dicts -> values --------------------------------------------------------------------------


def _fault(model: BaseModel) -> Fault:
    params = model.model_dump()
    if params["kind"] == "io" and isinstance(params["errno"], int):
        from ._plan import io

        return io(params["errno"], params["message"])
    return Fault(**params)


def _rule(model: _RuleModel) -> Rule:
    """Build the rule, reporting the fault's and the triggers' problems together."""
    problems: list[PlanFieldError] = []
    try:
        fault = _fault(model.fault)
    except PlanError as exc:
        problems += exc.prefixed("fault").errors
        fault = Fault("logic", exception="ZeroDivisionError")  # stands in while the rest is checked
    args = model.model_dump(exclude={"fault", "id", "site"})
    try:
        rule = Rule(model.site, fault, **args, id=model.id or "")
    except PlanError as exc:
        problems += exc.errors
    if problems:
        raise PlanError(problems)
    return rule


def parse_rule(data: Any) -> Rule:
    """A :class:`Rule` from its plan-file form (a dict); :class:`PlanError` naming the field."""
    try:
        model = _RuleModel.model_validate(data)
    except _PydanticError as exc:
        raise _from_pydantic(exc) from None
    return _rule(model)


def parse_plan_file(data: Any) -> PlanFile:
    """A :class:`PlanFile` from a parsed document (dict)."""
    try:
        model = _PlanModel.model_validate(data)
    except _PydanticError as exc:
        raise _from_pydantic(exc) from None
    rules = []
    problems: list[PlanFieldError] = []
    for i, rule_model in enumerate(model.rules):
        try:
            rules.append(_rule(rule_model))
        except PlanError as exc:
            problems += exc.prefixed(f"rules[{i}]").errors
    if problems:
        raise PlanError(problems)
    return PlanFile(FaultPlan(model.seed, tuple(rules)), dict(model.calls), model.test)


def parse_plan(data: Any) -> FaultPlan:
    """A :class:`FaultPlan` from a parsed document (dict)."""
    return parse_plan_file(data).plan


# -- text and files ---------------------------------------------------------------------------


def _format_of(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise PlanError.one("file", f"{path.name}: use a .json, .yaml or .yml file")


def parse_text(text: str, fmt: Format | None = None) -> Any:
    """A document from JSON or YAML text (JSON when it starts with ``{``, unless ``fmt`` says)."""
    fmt = fmt or ("json" if text.lstrip().startswith("{") else "yaml")
    try:
        if fmt == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise PlanError.one("(file)", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError.one("(file)", f"not valid YAML: {problem}{where}") from None


def loads_plan_file(text: str, fmt: Format | None = None) -> PlanFile:
    """A :class:`PlanFile` from JSON or YAML text."""
    return parse_plan_file(parse_text(text, fmt))


def load_document(path: str | Path) -> Any:
    """The parsed content of a ``.json``/``.yaml``/``.yml`` file (a plan, or a single rule)."""
    path = Path(path)
    fmt = _format_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError.one("file", f"cannot read {path}: {exc}") from None
    return parse_text(text, fmt)


def load_plan_file(path: str | Path) -> PlanFile:
    """A :class:`PlanFile` from a ``.json``/``.yaml``/``.yml`` file."""
    return parse_plan_file(load_document(path))


def load_plan(path: str | Path) -> FaultPlan:
    """A :class:`FaultPlan` from a ``.json``/``.yaml``/``.yml`` file."""
    return load_plan_file(path).plan


def dumps_plan(plan: FaultPlan | PlanFile, fmt: Format = "json") -> str:
    """The plan (with a PlanFile's extras) as JSON or YAML text."""
    data = plan.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def save_plan(plan: FaultPlan | PlanFile, path: str | Path) -> Path:
    """Write the plan to ``path`` (format from the suffix); returns the path."""
    path = Path(path)
    text = dumps_plan(plan, _format_of(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of the plan file (shape and types; value ranges are checked on load)."""
    schema: dict[str, Any] = TypeAdapter(_PlanModel).json_schema()
    return schema
