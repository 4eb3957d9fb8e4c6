"""The schedule file: JSON and YAML round trips, strict validation naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fault_injection import (
    FaultPlan,
    PlanError,
    PlanFile,
    Rule,
    dumps_plan,
    http_status,
    io,
    latency,
    load_plan,
    load_plan_file,
    loads_plan_file,
    logic,
    network,
    parse_plan,
    parse_rule,
    plan_schema,
    save_plan,
    validation,
)

PLAN = FaultPlan(42, (
    Rule("catalog.*", network("reset"), rate=0.3, ttl=600, id="catalog-down"),
    Rule("storage.write", io("ENOSPC"), first=2, max_hits=1),
    Rule("upload.analyse", logic(KeyError, "boom"), every=3, after=1),
    Rule("signup", validation("email"), only_flagged=True),
    Rule("upstream.*", latency(0.25, 0.05), for_seconds=30),
    Rule("catalog.fetch", http_status(503, retry_after=2.0)),
))


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_plans_round_trip_through_files(tmp_path: Path, suffix: str) -> None:
    """save_plan then load_plan gives the same plan, in every format."""
    path = save_plan(PLAN, tmp_path / f"plan{suffix}")
    assert load_plan(path) == PLAN


def test_plan_file_extras_round_trip(tmp_path: Path) -> None:
    """calls and test survive a save and load."""
    doc = PlanFile(PLAN, {"catalog.fetch": 12}, "tests/x.py::test_y")
    assert load_plan_file(save_plan(doc, tmp_path / "p.json")) == doc


def test_yaml_is_written_for_people() -> None:
    """YAML output keeps the field order of the format (id, site, fault ...)."""
    text = dumps_plan(FaultPlan(1, (Rule("a", network(), id="x"),)), "yaml")
    assert text.splitlines()[:6] == ["version: 1", "seed: 1", "rules:", "- id: x", "  site: a", "  fault:"]


def test_json_and_yaml_text_are_both_accepted() -> None:
    """loads_plan_file detects JSON by its brace, YAML otherwise."""
    assert loads_plan_file('{"seed": 1, "rules": []}').plan == FaultPlan(1, ())
    assert loads_plan_file("seed: 1\nrules: []\n").plan == FaultPlan(1, ())


@pytest.mark.parametrize(("doc", "field", "why"), [
    ({"rules": [{"site": "a", "fault": {"kind": "nope"}}]}, "rules[0].fault.kind", "must be one of"),
    ({"rules": [{"site": "a", "fault": {"kind": "network", "variant": "x"}}]}, "rules[0].fault.variant",
     "must be one of refused, reset, timeout"),
    ({"rules": [{"site": "a", "fault": {"kind": "network", "colour": "red"}}]}, "rules[0].fault.colour",
     "is not a known field"),
    ({"rules": [{"site": "a", "fault": {"kind": "latency"}}]}, "rules[0].fault.seconds", "Field required"),
    ({"rules": [{"site": "a", "fault": {"kind": "io", "errno": "EIO"}, "first": "2"}]}, "rules[0].first",
     "valid integer"),
    ({"rules": [{"site": "a", "fault": {"kind": "io", "errno": "EIO"}, "rate": 1.5}]}, "rules[0].rate",
     "from 0 to 1"),
    ({"rules": [{"fault": {"kind": "logic"}}]}, "rules[0].site", "Field required"),
    ({"seed": "x"}, "seed", "valid integer"),
    ({"version": 2}, "version", "Input should be 1"),
    ({"rulez": []}, "rulez", "is not a known field"),
    ([1, 2], "(plan)", "valid dictionary"),
])
def test_invalid_documents_name_the_field_and_why(doc: object, field: str, why: str) -> None:
    """Each invalid document is reported as 'field: why'."""
    with pytest.raises(PlanError) as info:
        parse_plan(doc)
    assert any(e["field"] == field and why in e["message"] for e in info.value.errors), info.value.errors


def test_bad_syntax_points_at_the_line() -> None:
    """YAML and JSON syntax errors say where."""
    with pytest.raises(PlanError, match="line 2 column 8"):
        loads_plan_file("seed: 1\nrules: : x\n")
    with pytest.raises(PlanError, match="not valid JSON"):
        loads_plan_file('{"seed": }')


def test_unknown_file_suffix_is_an_error(tmp_path: Path) -> None:
    """Only .json, .yaml and .yml files are plans."""
    with pytest.raises(PlanError, match=r"\.json, \.yaml or \.yml"):
        load_plan(tmp_path / "plan.txt")


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    """A missing file is reported, not raised as a bare OSError."""
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "absent.json")


def test_parse_rule_accepts_an_errno_number() -> None:
    """errno may be given as a number in the file; it is stored by name."""
    assert parse_rule({"site": "a", "fault": {"kind": "io", "errno": 28}}).fault == io("ENOSPC")


def test_schema_describes_the_fault_kinds() -> None:
    """plan_schema() is a JSON Schema listing the rule fields."""
    schema = plan_schema()
    assert schema["type"] == "object"
    assert "rules" in schema["properties"]
    assert "max_hits" in str(schema)
    assert "http_status" in str(schema)
