"""Experiments: strict file checks, full runs against a real app behind the real chaos
proxy, rollbacks that always run, the journal, the reports and the ``run`` CLI."""

from __future__ import annotations

import argparse
import copy
import http.client
import io
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

import fault_injection
from fault_injection._experiment import (
    ExperimentError,
    PlainProgress,
    RichProgress,
    load_experiment,
    parse_experiment,
    progress_for,
    run_experiment,
)
from fault_injection._experiment_cli import add_run_command
from fault_injection._experiment_load import LiveStats, Sample, percentile, series, summarize
from fault_injection._experiment_model import Activity
from fault_injection._experiment_tolerance import Tolerance, select, tolerance_met
from fault_injection.proxy import ChaosProxy, ControlServer

from .conftest import TOKEN, make_app

EXPERIMENTS = Path(fault_injection.__file__).parent / "experiments"


def serve(app: Flask) -> tuple[BaseWSGIServer, threading.Thread]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


def stop(server: BaseWSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    thread.join(5)
    server.server_close()


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@dataclass
class Stack:
    """upstream <- chaos proxy <- app (with the fault control API); URLs for the experiment."""

    app_url: str
    proxy: ChaosProxy
    proxy_url: str

    @property
    def config(self) -> dict[str, Any]:
        return {"app_url": self.app_url, "proxy_url": self.proxy_url, "token": TOKEN}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A real upstream, the proxy in front of it, and an app calling the upstream through it."""
    upstream = Flask("upstream")
    upstream.add_url_rule("/catalog", "catalog", lambda: {"titles": [1, 2, 3]})
    up = serve(upstream)
    proxy = ChaosProxy(("127.0.0.1", up[0].server_port)).start()
    control = ControlServer(proxy, TOKEN, port=0).start()
    app = make_app(tmp_path)

    def catalog() -> Any:
        conn = http.client.HTTPConnection(*proxy.listen, timeout=0.5)
        try:
            conn.request("GET", "/catalog")
            return json.loads(conn.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return {"error": type(exc).__name__}, 503
        finally:
            conn.close()

    app.add_url_rule("/api/catalog", "api_catalog", catalog)
    front = serve(app)
    try:
        yield Stack(f"http://127.0.0.1:{front[0].server_port}", proxy, control.url)
    finally:
        stop(*front)
        control.stop()
        proxy.stop()
        stop(*up)


def probe(name: str = "catalog-ok", tolerance: Any = 200, url: str = "/api/catalog") -> dict[str, Any]:
    return {"type": "probe", "name": name, "tolerance": tolerance, "provider": {"type": "http", "url": url}}


def action(label: str, func: str, /, **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": label, "provider": {"type": "shockproof", "func": func, "arguments": arguments}}


def tiny_load(name: str = "traffic") -> dict[str, Any]:
    return action(name, "load", routes=["/api/catalog"], rate=200, duration=0.1, requests=20, concurrency=4)


def experiment(config: dict[str, Any], method: list[dict[str, Any]], rollbacks: list[dict[str, Any]] | None = None,
               probes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "title": "catalog survives the proxy",
        "description": "test experiment",
        "tags": ["test"],
        "configuration": config,
        "steady-state-hypothesis": {"title": "the catalog answers", "probes": probes or [probe()]},
        "method": method,
        "rollbacks": rollbacks if rollbacks is not None else [action("heal", "remove_toxic", name="cut")],
    }


def extension(journal: Any) -> dict[str, Any]:
    return next(e for e in journal["extensions"] if e["name"] == "shockproof")


# -- full runs ---------------------------------------------------------------------------------


def test_a_harmless_method_completes_with_exit_code_0(stack: Stack, tmp_path: Path) -> None:
    """The steady state holds before and after a small latency: completed, not deviated, exit 0."""
    method = [action("slow", "add_toxic", type="latency", name="cut", attributes={"latency": 0.01}), tiny_load()]
    result = run_experiment(parse_experiment(experiment(stack.config, method)), report_dir=tmp_path / "r")
    assert (result.status, result.deviated, result.exit_code) == ("completed", False, 0)
    assert extension(result.journal)["load"]["requests"] == 20
    assert stack.proxy.toxics() == []


def test_a_toxic_that_breaks_the_hypothesis_is_a_deviation_and_is_rolled_back(stack: Stack, tmp_path: Path) -> None:
    """reset_peer makes the app answer 503: deviated, failed, exit 1; the rollback removes the toxic."""
    method = [action("cut", "add_toxic", type="reset_peer", name="cut"), tiny_load()]
    result = run_experiment(parse_experiment(experiment(stack.config, method)), report_dir=tmp_path / "r")
    journal = result.journal
    assert (journal["status"], journal["deviated"], result.exit_code) == ("failed", True, 1)
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["steady_states"]["after"]["steady_state_met"] is False
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    assert stack.proxy.toxics() == []
    [window] = extension(journal)["faults"]
    assert (window["kind"], window["key"], window["left_open"]) == ("toxic", "cut", False)
    assert extension(journal)["load"]["statuses"] == {"503": 20}


def test_rollbacks_run_after_an_abort(stack: Stack, tmp_path: Path) -> None:
    """A KeyboardInterrupt in the method aborts the run, and the rollbacks still remove the toxic."""
    method = [action("cut", "add_toxic", type="timeout", name="cut"), tiny_load("boom")]

    def interrupt(phase: str, activity: Activity) -> None:
        if phase == "method" and activity.name == "boom":
            raise KeyboardInterrupt

    result = run_experiment(parse_experiment(experiment(stack.config, method)), report_dir=tmp_path / "r",
                            hook=interrupt)
    assert (result.status, result.exit_code) == ("aborted", 1)
    assert extension(result.journal)["outcome"] == "interrupted"
    assert [r["activity"]["name"] for r in result.journal["rollbacks"]] == ["heal"]
    assert stack.proxy.toxics() == []


def test_rollbacks_run_when_the_hypothesis_fails_before(stack: Stack, tmp_path: Path) -> None:
    """A hypothesis that does not hold at first skips the method; the rollbacks still run."""
    stack.proxy.add_toxic(fault_injection.proxy.reset_peer(name="cut"))
    result = run_experiment(parse_experiment(experiment(stack.config, [tiny_load()])), report_dir=tmp_path / "r")
    assert (result.status, result.exit_code, result.journal["run"]) == ("failed", 1, [])
    assert extension(result.journal)["outcome"] == "steady-state-not-met"
    assert stack.proxy.toxics() == []


def test_add_fault_arms_a_rule_in_the_app_and_the_rollback_disarms_it(stack: Stack, tmp_path: Path) -> None:
    """add_fault goes through the control API; a method probe sees the fault; remove_fault clears it."""
    fault_injection.enable()
    method = [
        action("break-work", "add_fault", site="app.work", fault={"kind": "network", "variant": "reset"}),
        probe("work-faulted", {"type": "jsonpath", "path": "$.faulted", "expect": True}, "/work"),
    ]
    spec = experiment(stack.config, method, rollbacks=[action("heal", "remove_fault")])
    result = run_experiment(parse_experiment(spec), report_dir=tmp_path / "r")
    assert result.journal["run"][1]["tolerance_met"] is True
    assert result.journal["rollbacks"][0]["output"]["removed"] == [result.journal["run"][0]["output"][0]["id"]]
    assert fault_injection.active_plan().rules == ()
    assert [w["kind"] for w in extension(result.journal)["faults"]] == ["fault"]


def test_an_unreachable_proxy_aborts_with_exit_code_3(stack: Stack, tmp_path: Path) -> None:
    """When the proxy's control endpoint is not there, the run aborts (exit 3); rollbacks are attempted."""
    config = {**stack.config, "proxy_url": dead_url()}
    result = run_experiment(parse_experiment(experiment(config, [action("cut", "add_toxic", type="timeout")])),
                            report_dir=tmp_path / "r")
    assert (result.status, result.exit_code) == ("aborted", 3)
    assert [r["status"] for r in result.journal["rollbacks"]] == ["failed"]


def test_a_refused_token_aborts_with_exit_code_4(stack: Stack, tmp_path: Path) -> None:
    """A wrong token makes the control call fail with 401: aborted, exit 4, no toxic installed."""
    config = {**stack.config, "token": "not-the-token"}
    result = run_experiment(parse_experiment(experiment(config, [action("cut", "add_toxic", type="timeout")])),
                            report_dir=tmp_path / "r")
    assert (result.status, result.exit_code) == ("aborted", 4)
    assert stack.proxy.toxics() == []


def test_an_unreachable_app_exits_with_code_3(tmp_path: Path) -> None:
    """The hypothesis cannot even be checked: failed with exit code 3 (target unreachable)."""
    config = {"app_url": dead_url(), "proxy_url": dead_url(), "token": TOKEN}
    result = run_experiment(parse_experiment(experiment(config, [tiny_load()], rollbacks=[])),
                            report_dir=tmp_path / "r")
    assert (result.status, result.exit_code) == ("failed", 3)


def test_journal_has_chaos_toolkit_shape_and_no_secrets(stack: Stack, tmp_path: Path) -> None:
    """The journal carries Chaos Toolkit's top-level keys, our data under extensions, never the token."""
    method = [action("cut", "add_toxic", type="latency", name="cut", attributes={"latency": 0.01}), tiny_load()]
    result = run_experiment(parse_experiment(experiment(stack.config, method)), report_dir=tmp_path / "r")
    text = result.paths["journal"].read_text()
    journal = json.loads(text)
    for key in ("chaoslib-version", "experiment", "start", "end", "duration", "status", "deviated",
                "steady_states", "run", "rollbacks", "extensions"):
        assert key in journal
    assert set(journal["steady_states"]) == {"before", "after", "during"}
    assert journal["run"][0]["activity"]["name"] == "cut"
    assert {"timeline", "faults", "series", "load", "exit_code"} <= set(extension(journal))
    assert TOKEN not in text
    assert journal["experiment"]["configuration"]["token"] == "***"


def test_reports_are_markdown_and_self_contained_html_with_svg_charts(stack: Stack, tmp_path: Path) -> None:
    """report.html holds inline SVG charts (lines and a fault band), no scripts or external links."""
    method = [action("cut", "add_toxic", type="latency", name="cut", attributes={"latency": 0.01}), tiny_load()]
    result = run_experiment(parse_experiment(experiment(stack.config, method)), report_dir=tmp_path / "r")
    page = result.paths["html"].read_text()
    assert page.count("<svg") == 2
    assert 'class="series success_rate"' in page
    assert 'class="series p99_ms"' in page
    assert '<g class="fault">' in page
    assert "<script" not in page
    assert 'src="http' not in page
    assert 'href="http' not in page
    markdown = result.paths["markdown"].read_text()
    assert "## Load" in markdown
    assert "| 20 | 100.0% |" in markdown


def test_plain_progress_shows_phases_activities_and_load(stack: Stack, tmp_path: Path) -> None:
    """Without a terminal, the progress is plain lines: phases, activity results, request figures."""
    out = io.StringIO()
    spec = experiment(stack.config, [tiny_load()], rollbacks=[])
    run_experiment(parse_experiment(spec), report_dir=tmp_path / "r", progress=PlainProgress(out, every=0))
    text = out.getvalue()
    assert "== steady-state-before" in text
    assert "== method" in text
    assert "method: traffic ... succeeded" in text
    assert "load: 20 requests, 100.0% ok" in text


# -- the file format ---------------------------------------------------------------------------


def valid() -> dict[str, Any]:
    config = {"app_url": "http://127.0.0.1:9", "proxy_url": "http://127.0.0.1:9", "token": "x"}
    return experiment(config, [tiny_load()])


def errors_of(data: Any) -> dict[str, str]:
    with pytest.raises(ExperimentError) as info:
        parse_experiment(data)
    return {e["field"]: e["message"] for e in info.value.errors}


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["title"], None, "title"),
        (["secrets"], {}, "secrets"),
        (["controls"], [], "controls"),
        (["colour"], "red", "colour"),
        (["method"], [], "method"),
        (["steady-state-hypothesis", "probes", 0, "tolerance"], None, "steady-state-hypothesis.probes[0].tolerance"),
        (["steady-state-hypothesis", "probes", 0, "tolerance"], "ok", "steady-state-hypothesis.probes[0].tolerance"),
        (["method", 0, "provider", "type"], "python", "method[0].provider.type"),
        (["method", 0, "provider", "func"], "rm_rf", "method[0].provider.func"),
        (["method", 0, "provider", "arguments", "rate"], 5000, "method[0].provider.arguments.rate"),
        (["method", 0, "provider", "arguments", "duration"], None, "method[0].provider.arguments.duration"),
        (["method", 0, "provider", "arguments", "routes"], ["catalog"], "method[0].provider.arguments.routes[0].path"),
        (["method", 0, "pauses"], {"before": -1}, "method[0].pauses.before"),
        (["method", 0, "type"], "wish", "method[0].type"),
        (["rollbacks", 0, "background"], True, "rollbacks[0].background"),
        (["configuration", "app_url"], "ftp://x", "configuration.app_url"),
        (["configuration", "secret_port"], {"type": "env", "key": "SHOCKPROOF_NOT_SET_X"}, "configuration.secret_port"),
    ],
)
def test_invalid_fields_are_named_with_the_reason(path: list[Any], value: Any, field: str) -> None:
    """Each invalid field is reported by its path, with why."""
    data = valid()
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    errors = errors_of(data)
    assert field in errors
    assert errors[field]


def test_fault_and_toxic_arguments_are_checked_with_their_own_rules() -> None:
    """add_fault uses the plan file's rule checks; add_toxic the proxy's toxic checks."""
    data = valid()
    data["method"] = [action("f", "add_fault", site="x", fault={"kind": "io", "errno": "EBLAH"}, rate=2),
                      action("t", "add_toxic", type="latency", attributes={"latency": -1})]
    errors = errors_of(data)
    assert {"method[0].provider.arguments.fault.errno", "method[0].provider.arguments.rate",
            "method[1].provider.arguments.attributes.latency"} <= set(errors)


def test_every_error_is_reported_at_once() -> None:
    """Several mistakes give several errors, not just the first."""
    data = valid()
    data.pop("title")
    data["method"][0]["provider"]["arguments"]["rate"] = -1
    assert {"title", "method[0].provider.arguments.rate"} <= set(errors_of(data))


def test_configuration_substitution_and_env_values() -> None:
    """${name} is replaced from configuration; {type: env} reads the environment (or its default)."""
    data = valid()
    data["configuration"]["base"] = {"type": "env", "key": "SHOCKPROOF_TEST_BASE", "default": "/api"}
    data["steady-state-hypothesis"]["probes"][0]["provider"]["url"] = "${base}/catalog"
    parsed = parse_experiment(data, environ={"SHOCKPROOF_TEST_BASE": "/v2"})
    assert parsed.probes[0].provider.url == "/v2/catalog"
    data["steady-state-hypothesis"]["probes"][0]["provider"]["url"] = "${nope}/catalog"
    assert "steady-state-hypothesis.probes[0].provider.url" in errors_of(data)


def test_yaml_files_load_and_bad_yaml_is_a_file_error(tmp_path: Path) -> None:
    """YAML and JSON files load; unparsable text is reported against 'file'."""
    good = tmp_path / "e.yaml"
    good.write_text(yaml.safe_dump(valid()))
    assert load_experiment(good).title == "catalog survives the proxy"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ExperimentError) as info:
        load_experiment(bad)
    assert info.value.errors[0]["field"] == "file"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_experiments_are_valid(path: Path) -> None:
    """Every experiment shipped for the demo passes the strict checks."""
    parsed = load_experiment(path)
    assert parsed.method
    assert parsed.rollbacks


def test_shipped_experiments_cover_each_kind_and_a_mixed_one() -> None:
    """One experiment per error kind, and a mixed one."""
    assert {p.stem for p in EXPERIMENTS.glob("*.yaml")} >= {"logic", "validation", "network", "io", "mixed"}


# -- tolerances and figures ----------------------------------------------------------------------


def http_output(status: int, body: Any) -> dict[str, Any]:
    return {"status": status, "headers": {}, "body": body, "latency_ms": 1.0}


def test_status_range_regex_and_jsonpath_tolerances() -> None:
    """Each tolerance kind judges an HTTP probe's output."""
    out = http_output(200, {"degraded": False, "items": [{"id": 1}, {"id": 2}], "ratio": 0.97})
    assert tolerance_met(Tolerance("status", 200, statuses=(200, 201)), out, False)
    assert not tolerance_met(Tolerance("status", 503, statuses=(503,)), out, False)
    assert tolerance_met(Tolerance("range", {}, low=200, high=299, target="status"), out, False)
    assert tolerance_met(Tolerance("range", {}, low=0.95, high=1, path="$.ratio"), out, False)
    assert not tolerance_met(Tolerance("range", {}, low=0.99, high=1, path="$.ratio"), out, False)
    assert tolerance_met(Tolerance("regex", {}, pattern=r"^2$", path="$.items[1].id"), out, False)
    assert tolerance_met(Tolerance("jsonpath", {}, path="$.items[*].id", expect=[1, 2], has_expect=True), out, False)
    assert not tolerance_met(Tolerance("jsonpath", {}, path="$.missing"), out, False)
    assert tolerance_met(Tolerance("bool", True, expected=True), None, False)
    assert not tolerance_met(Tolerance("status", 200, statuses=(200,)), None, True)


def test_json_path_selects_keys_indexes_and_wildcards() -> None:
    """The small JSON path: .key, [n], [*], ['quoted key']."""
    doc = {"a": [{"b": 1}, {"b": 2}], "c d": 3}
    assert select(doc, "$.a[*].b") == [1, 2]
    assert select(doc, "$.a[-1].b") == [2]
    assert select(doc, "$['c d']") == [3]
    assert select(doc, "$.nothing") == []


def test_percentiles_and_series_buckets() -> None:
    """Nearest-rank percentiles; the series buckets samples by time with success rates."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    samples = [Sample(0.05, 0.01, True, 200, "r"), Sample(0.06, 0.03, False, 503, "r"), Sample(0.35, 0.02, True, 200, "r")]
    buckets = series(samples, 0.4)
    assert [b["requests"] for b in buckets] == [2, 0, 0, 1, 0]
    assert buckets[0]["success_rate"] == 0.5
    assert buckets[1]["success_rate"] is None
    assert summarize(samples)["statuses"] == {"200": 2, "503": 1}


# -- the CLI ----------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="shockproof-faults")
    add_run_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cli_run_exit_codes(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """run: 0 when the hypothesis holds, 1 when it deviates, 2 for an invalid file (field printed)."""
    config = {"app_url": stack.app_url}
    harmless = experiment(config, [tiny_load()], rollbacks=[])
    overrides = ["--proxy-url", stack.proxy_url, "--token", TOKEN, "--quiet"]
    assert cli("run", write(tmp_path, harmless), *overrides, "--report-dir", str(tmp_path / "a")) == 0
    breaking = experiment(config, [action("cut", "add_toxic", type="reset_peer", name="cut")])
    assert cli("run", write(tmp_path, breaking), *overrides, "--report-dir", str(tmp_path / "b")) == 1
    assert stack.proxy.toxics() == []
    broken = copy.deepcopy(harmless)
    broken["method"][0]["provider"]["arguments"]["rate"] = "fast"
    assert cli("run", write(tmp_path, broken), *overrides) == 2
    assert "method[0].provider.arguments.rate" in capsys.readouterr().err


def test_cli_dry_run_and_var_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run only checks and prints the plan; --var overrides configuration (JSON-typed)."""
    data = valid()
    data["method"][0]["provider"]["arguments"]["rate"] = "${rate}"
    assert cli("run", write(tmp_path, data), "--var", "rate=50", "--dry-run") == 0
    assert "action traffic: load" in capsys.readouterr().out
    assert cli("run", write(tmp_path, data), "--var", "rate=\"x\"", "--dry-run") == 2


def test_an_abort_stops_background_load_and_still_rolls_back(stack: Stack, tmp_path: Path) -> None:
    """Ctrl-C during a long background load stops the load early; the rollbacks run."""
    long_load = action("long", "load", routes=["/api/catalog"], rate=5, duration=60)
    long_load["background"] = True
    method = [long_load, action("cut", "add_toxic", type="latency", name="cut", attributes={"latency": 0.01}),
              action("stop-here", "clear_toxics")]

    def interrupt(phase: str, activity: Activity) -> None:
        if activity.name == "stop-here":
            raise KeyboardInterrupt

    result = run_experiment(parse_experiment(experiment(stack.config, method)), report_dir=tmp_path / "r",
                            hook=interrupt)
    assert result.status == "aborted"
    [load] = [r for r in result.journal["run"] if r["activity"]["name"] == "long"]
    assert load["output"]["requests"] < load["output"]["planned"] == 300
    assert stack.proxy.toxics() == []


def test_a_terminal_gets_the_rich_live_panel() -> None:
    """progress_for picks the rich panel for a terminal and plain lines otherwise."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = progress_for(screen, "demo")
    progress.phase("method")
    progress.stats(LiveStats(10, 9, 0.002, 0.010))
    progress.close()
    assert isinstance(progress, RichProgress)
    assert "90.0%" in screen.getvalue()
    assert "method" in screen.getvalue()
    assert isinstance(progress_for(io.StringIO(), "demo"), PlainProgress)
