"""``shockproof-faults``: commands against a running app, replay, plan validation, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fault_injection as fi
from fault_injection import FaultPlan, PlanFile, Rule, io, network, save_plan
from fault_injection._cli import main
from tests.fault_injection.conftest import TOKEN, closed_port

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) in-process: exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_shows_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 with examples and the exit code table."""
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "shockproof-faults add --url http://127.0.0.1:8000 --token T --site 'catalog.*'" in out
    assert "3  the app is unreachable" in out
    assert "4  authentication failed" in out


def test_add_help_lists_the_fault_options_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """add --help explains which option goes with which kind."""
    code, out, _ = run(capsys, "add", "--help")
    assert code == 0
    assert "io           --errno NAME" in out
    assert "--only-flagged" in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse errors exit 2."""
    code, _, err = run(capsys, "explode")
    assert code == 2
    assert "invalid choice" in err


def test_add_list_remove_halt_status_against_a_running_app(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The control commands work end to end over HTTP."""
    fi.enable()
    conn = ["--url", served, "--token", TOKEN]
    code, out, _ = run(capsys, "add", *conn, "--site", "app.*", "--kind", "network", "--variant", "reset",
                       "--rate", "1", "--id", "down", "--ttl", "60")
    assert code == 0
    assert out.startswith("added down: app.* -> network(variant=reset)")
    code, out, _ = run(capsys, "list", *conn)
    assert code == 0
    assert out.splitlines()[0].split() == ["ID", "SITE", "FAULT", "TRIGGERS", "CALLS", "HITS",
                                                          "EXPIRES", "IN"]
    assert "down" in out
    assert "ttl=60.0" in out
    code, out, _ = run(capsys, "status", *conn, "--json")
    assert code == 0
    assert json.loads(out)["active_rules"] == 1
    code, out, _ = run(capsys, "remove", *conn, "down")
    assert code == 0
    assert fi.active_plan().rules == ()
    run(capsys, "add", *conn, "--site", "x", "--kind", "io", "--errno", "ENOSPC", "--first", "2")
    code, out, _ = run(capsys, "halt", *conn)
    assert code == 0
    assert "1 rule(s) disarmed" in out


def test_add_a_plan_file_with_its_seed(served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add --file arms every rule of a plan file."""
    fi.enable()
    path = save_plan(FaultPlan(99, (Rule("a", network(), id="a"), Rule("b", io("EIO"), id="b"))),
                     tmp_path / "plan.yaml")
    code, out, _ = run(capsys, "add", "--url", served, "--token", TOKEN, "--file", str(path))
    assert code == 0
    assert out.count("added") == 2
    assert [s.seed for s in fi.stats()] == [99, 99]


def test_invalid_rule_options_name_the_option_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value is reported against its command-line option, before any request (exit 2)."""
    code, _, err = run(capsys, "add", "--url", f"http://127.0.0.1:{closed_port()}", "--token", "t",
                       "--site", "a", "--kind", "network", "--variant", "sideways", "--rate", "2")
    assert code == 2
    assert "--variant: must be one of refused, reset, timeout" in err
    assert "--rate: must be a number" in err


def test_option_of_another_kind_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--errno with --kind network says the option does not belong."""
    code, _, err = run(capsys, "add", "--token", "t", "--site", "a", "--kind", "network", "--errno", "EIO")
    assert code == 2
    assert "--errno: is not a known field" in err


def test_add_without_site_or_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """add needs --site and --kind (or --file)."""
    code, _, err = run(capsys, "add", "--token", "t", "--site", "a")
    assert code == 2
    assert "--site and --kind" in err


def test_unreachable_app_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing at --url: exit code 3 and a hint."""
    code, _, err = run(capsys, "status", "--url", f"http://127.0.0.1:{closed_port()}", "--token", "t")
    assert code == 3
    assert "cannot reach" in err
    assert "check --url" in err


def test_bad_token_exits_4_without_echoing_it(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused token: exit code 4, and the token is not printed."""
    code, out, err = run(capsys, "list", "--url", served, "--token", "wrong-token-value")
    assert code == 4
    assert "refused the token" in err
    assert "wrong-token-value" not in out + err


def test_token_file_is_read(served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--token-file supplies the token; a missing file is a usage error."""
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert run(capsys, "status", "--url", served, "--token-file", str(tmp_path / "t"))[0] == 0
    code, _, err = run(capsys, "status", "--url", served, "--token-file", str(tmp_path / "absent"))
    assert code == 2
    assert "cannot read the token file" in err


def test_missing_token_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """No --token, no --token-file, no env, no default file: exit 2 saying so."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHOCKPROOF_FAULTS_TOKEN", raising=False)
    code, _, err = run(capsys, "status")
    assert code == 2
    assert "no token" in err


def test_remove_unknown_rule_exits_2(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Removing a rule that is not armed is reported with the API's reason."""
    code, _, err = run(capsys, "remove", "--url", served, "--token", TOKEN, "ghost")
    assert code == 2
    assert "no active rule with id 'ghost'" in err


def test_header_prints_a_verifiable_fault_header(capsys: pytest.CaptureFixture[str]) -> None:
    """header prints X-Shockproof-Fault signed with the token."""
    code, out, _ = run(capsys, "header", "--token", TOKEN, "--rules", "a,b")
    name, _, value = out.strip().partition(": ")
    ctx = fi.extract({name: value}, TOKEN)
    assert code == 0
    assert ctx is not None
    assert ctx.rules == frozenset({"a", "b"})


def test_replay_prints_the_decisions_call_by_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """replay shows which calls of a site get which fault, matching FaultPlan.decisions."""
    plan = FaultPlan(4, (Rule("storage.write", io("ENOSPC"), every=2, id="full"),))
    path = save_plan(plan, tmp_path / "p.json")
    code, out, _ = run(capsys, "replay", str(path), "--calls", "4")
    assert code == 0
    assert "storage.write: 2 of 4 call(s) get a fault" in out
    assert "  #2 storage.write: io(ENOSPC) by full" in out
    assert "  #3 storage.write: no fault" in out


def test_replay_json_uses_the_recorded_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --site, replay previews the call counts the plan file recorded."""
    plan = FaultPlan(4, (Rule("s.*", network(), rate=0.5, id="r"),))
    path = save_plan(PlanFile(plan, {"s.a": 6}), tmp_path / "p.yaml")
    code, out, _ = run(capsys, "replay", str(path), "--json")
    decisions = json.loads(out)["sites"]["s.a"]
    assert code == 0
    assert [d["raised"] is not None for d in decisions] == \
        [d.injected for d in plan.decisions("s.a", 6)]


def test_replay_of_globs_needs_named_sites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plan with only glob sites and no recorded calls asks for --site."""
    path = save_plan(FaultPlan(0, (Rule("s.*", network()),)), tmp_path / "p.json")
    code, _, err = run(capsys, "replay", str(path))
    assert code == 2
    assert "--site NAME[=CALLS]" in err


def test_replay_run_needs_a_recorded_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """replay --run on a plan without a test id is a usage error."""
    path = save_plan(FaultPlan(0, ()), tmp_path / "p.json")
    code, _, err = run(capsys, "replay", str(path), "--run")
    assert code == 2
    assert "records no test" in err


def test_plan_validate_reports_each_field_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plan validate prints 'field: why' for each invalid field, exit 2; valid files pass."""
    good = save_plan(FaultPlan(1, (Rule("a", network()),)), tmp_path / "good.json")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nrules:\n  - site: a\n    fault: {kind: io, errno: ENOPE}\n    every: 0\n")
    code, out, err = run(capsys, "plan", "validate", str(good), str(bad))
    assert code == 2
    assert f"{good}: ok (1 rule(s), seed 1)" in out
    assert "rules[0].fault.errno: must be an errno name" in err


def test_plan_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """plan schema prints the file format's JSON Schema."""
    code, out, _ = run(capsys, "plan", "schema")
    assert code == 0
    assert "rules" in json.loads(out)["properties"]


def test_real_subprocess_reports_an_invalid_plan(tmp_path: Path) -> None:
    """python -m fault_injection runs as a program: an invalid plan exits 2 naming the field."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"site": "a", "fault": {"kind": "network", "variant": "x"}}]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fault_injection", "plan", "validate", str(bad)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "rules[0].fault.variant: must be one of refused, reset, timeout" in proc.stderr


def test_replay_run_reruns_the_recorded_test_with_the_plan(tmp_path: Path,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    """replay --run runs the plan's test with $SHOCKPROOF_FAULT_PLAN, so plans() yields exactly it."""
    plan = FaultPlan(8, (Rule("catalog.fetch", network("reset"), first=1),))
    test_file = tmp_path / "test_replayed.py"
    test_file.write_text(
        "from hypothesis import given, settings\n"
        "from fault_injection import load_plan\n"
        "from fault_injection.strategies import plans\n"
        "import os\n\n"
        "@settings(max_examples=5, database=None)\n"
        "@given(plan=plans(['catalog.fetch']))\n"
        "def test_plan(plan):\n"
        "    assert plan == load_plan(os.environ['SHOCKPROOF_FAULT_PLAN'])\n"
        "    assert plan.rules[0].fault.variant == 'reset'\n")
    path = save_plan(PlanFile(plan, {}, f"{test_file}::test_plan"), tmp_path / "failing.json")
    code = main(["replay", str(path), "--run"])
    out = capfd.readouterr().out
    assert code == 0, out
    assert "1 passed" in out
