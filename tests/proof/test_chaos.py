"""Stateful chaos: the demo app keeps its promises while faults of every kind come and go.

The app runs in-process (Flask's test client) with telemetry writing to a real SQLite
store, and reaches the upstream catalog (a real second process) through a real chaos
proxy. See :mod:`tests.proof.chaos_machine` for the rules and invariants. The bounded
``proof-default`` profile runs in ``make test``; ``SHOCKPROOF_CHAOS_PROFILE=chaos``
(``make chaos``) runs the deeper ``chaos`` profile. A failing example writes its fault
plan to ``.shockproof/failing-plans/`` and prints the ``shockproof-faults replay`` command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

import fault_injection
import telemetry
from fault_injection import FaultPlan, Rule, latency, load_plan_file
from fault_injection.proxy import ChaosProxy
from resilience.testing import fake_clock
from telemetry.query import Query

from .chaos_machine import ChaosEnv, ChaosMachine, saves_plan_on_failure
from .chaos_model import Attempt, CircuitModel, Ledger, Transition, UserRecord, expected_range
from .conftest import StoreHandle, chaos_settings, deep_chaos
from .support import close_demo, make_demo


def _run(env: ChaosEnv, machine: type[ChaosMachine], profile: settings) -> None:
    try:
        run_state_machine_as_test(lambda: machine(env), settings=profile)  # type: ignore[arg-type]
    except BaseException:
        if env.failing_plan is not None:
            print(f"failing fault plan saved to {env.failing_plan}\n"
                  f"  replay: shockproof-faults replay {env.failing_plan}")
        raise


@pytest.mark.timeout(3 * 3600 if deep_chaos() else 300)  # the deep run may shrink for long
def test_the_demo_keeps_its_promises_under_chaos(tmp_path: Path, chaos_proxy: ChaosProxy,
                                                 request: pytest.FixtureRequest) -> None:
    """No unexplained 500, no leak, no lost write, every error traced, circuits explained."""
    env = ChaosEnv(tmp_path / "examples", chaos_proxy, request.node.nodeid)
    _run(env, ChaosMachine, chaos_settings())
    assert sum(env.injected.values()) > 0, "the run injected no fault"
    assert any(s >= 500 for s in env.statuses), env.statuses


def test_a_latency_fault_on_a_call_that_succeeds_is_in_the_store(
        tmp_path: Path, chaos_proxy: ChaosProxy, telemetry_store: StoreHandle) -> None:
    """Injected latency alone (nothing else happens in the call) still leaves a tagged span."""
    host, port = chaos_proxy.listen
    app = make_demo(tmp_path / "data", f"http://{host}:{port}")
    with fake_clock(), fault_injection.installed(FaultPlan(1, (Rule("progress.save", latency(0.2)),))):
        response = app.test_client().put("/api/progress/1", json={"position_s": 3.0},
                                         headers={"X-User": "alice"})
    close_demo(app)
    assert response.status_code == 200
    assert telemetry.flush(10.0)
    with Query(telemetry_store.path) as query:
        detail = query.trace(response.headers["X-Trace-Id"])
    assert detail is not None
    tagged = [s for s in detail.spans if s.attributes.get("shockproof.fault.injected") is True]
    assert [s.name for s in tagged] == ["progress.save"]


class _AlwaysFailsOnceArmed(ChaosMachine):
    """A machine with an invariant that breaks as soon as any fault rule is armed."""

    @invariant()
    @saves_plan_on_failure
    def nothing_is_armed(self) -> None:
        assert not self.armed, "a rule is armed"


def test_a_failing_example_leaves_a_replayable_plan(tmp_path: Path, chaos_proxy: ChaosProxy,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The failing example's rules are saved as a plan file and the replay command is printed."""
    env = ChaosEnv(tmp_path / "examples", chaos_proxy, "tests/proof::demo",
                   failing_dir=tmp_path / "failing")
    with pytest.raises(AssertionError, match="a rule is armed"):
        _run(env, _AlwaysFailsOnceArmed, settings(chaos_settings(), max_examples=50, stateful_step_count=10,
                                                  database=None, phases=[Phase.generate]))
    assert env.failing_plan is not None
    saved = load_plan_file(env.failing_plan)
    assert saved.plan.rules
    assert saved.test == "tests/proof::demo"
    assert f"shockproof-faults replay {env.failing_plan}" in capsys.readouterr().out
    assert fault_injection.active_plan().rules == ()


def test_the_ledger_sees_a_lost_write(tmp_path: Path) -> None:
    """An acknowledged progress value missing from disk is reported."""
    ledger = Ledger(progress={("alice", 1): 12.5})
    assert ledger.problems(tmp_path) != []


def test_the_ledger_sees_a_phantom_user(tmp_path: Path) -> None:
    """A user file no acknowledged signup explains is reported."""
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "u-1.json").write_text("{}")
    assert Ledger().problems(tmp_path) != []
    ledger = Ledger(users={"a@b.co": UserRecord("u-1", "a@b.co", "A", "free")})
    assert any("u-1" in p for p in ledger.problems(tmp_path))


def test_the_circuit_model_rejects_an_early_open() -> None:
    """Opening after fewer counted failures than the threshold is flagged."""
    model = CircuitModel(consecutive=3, open_for=30.0)
    model.attempts += [Attempt(1, 1), Attempt(2, 1)]
    model.failed(1, 1, ConnectionError())
    model.failed(2, 1, ConnectionError())
    model.transitions.append(Transition(2, "closed", "open", 0.0))
    assert model.problems("open", 0.0) != []


def test_the_circuit_model_ignores_logic_failures() -> None:
    """Logic failures neither count towards opening nor break a streak."""
    model = CircuitModel(consecutive=2, open_for=30.0)
    model.attempts += [Attempt(1, 1), Attempt(2, 1), Attempt(3, 1)]
    model.failed(1, 1, ConnectionError())
    model.failed(2, 1, ZeroDivisionError())
    model.failed(3, 1, OSError(5, "EIO"))
    model.transitions.append(Transition(3, "closed", "open", 0.0))
    assert model.problems("open", 0.0) == []
    assert model.problems("closed", 0.0) != []


def test_the_circuit_model_rejects_an_early_half_open() -> None:
    """Half-opening before ``open_for`` elapsed is flagged; after it, it is not."""
    model = CircuitModel(consecutive=1, open_for=30.0)
    model.attempts.append(Attempt(1, 1))
    model.failed(1, 1, ConnectionError())
    model.transitions += [Transition(1, "closed", "open", 100.0),
                          Transition(1, "open", "half-open", 110.0)]
    assert model.problems("half-open", 110.0) != []
    model.transitions[-1] = Transition(1, "open", "half-open", 130.0)
    assert model.problems("half-open", 130.0) == []


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-9", (0, 9)), ("bytes=-10", (90, 99)), ("bytes=95-", (95, 99)),
    ("bytes=0-500", (0, 99)), ("bytes=100-", "416"), ("bytes=5-2", "416"), ("bytes=-0", "416"),
    ("bytes=0-1,4-5", None), ("items=0-1", "416"), ("bytes=\u0661-2", "416"),
])
def test_the_range_oracle_reads_rfc_9110(header: str | None, expected: object) -> None:
    """The test's own reading of byte ranges, on a 100-byte body."""
    assert expected_range(header, 100) == expected
