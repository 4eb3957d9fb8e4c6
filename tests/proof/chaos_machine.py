"""The stateful chaos test's machine: the demo app driven in-process while faults come and go.

Traffic rules (signups, uploads, progress, catalog, titles, streams; valid and invalid
input) interleave with rules that arm and disarm generated fault rules (all kinds, at
every guarded site), break and heal the upstream through the chaos proxy (real
sockets), and move the fake clock. After every step the invariants check what the
app must guarantee whatever happened: no unexplained 500, clean problem bodies, no
lost or phantom write, no temporary file left, every error traced with its kind and
every injected fault tagged, and a circuit whose state the failure history explains.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import itertools
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from werkzeug.test import TestResponse

import fault_injection
import resilience
import telemetry
from demo_app import media
from demo_app.storage import verify_password
from fault_injection import IO_ERRNOS, FaultPlan, PlanFile, Rule, save_plan
from fault_injection.proxy import ChaosProxy, down, limit_data, reset_peer
from fault_injection.strategies import plans as fault_plans
from fault_injection.strategies import rules as fault_rules
from resilience import AttemptFailed, AttemptInfo, CircuitStateChanged, ErrorKind, FaultInjected
from resilience.testing import fake_clock
from telemetry.query import Query

from .chaos_model import (
    TITLES,
    Attempt,
    CircuitModel,
    Ledger,
    Transition,
    UserRecord,
    catalog_document,
    expected_range,
    title_document,
)
from .support import (
    ROOT,
    RUNTIME_TYPES,
    close_demo,
    demo_state,
    leftovers,
    make_demo,
    problem_body,
    request_log,
    request_span,
    upload,
)

F = TypeVar("F", bound=Callable[..., Any])

SITES = ("catalog.fetch", "progress.save", "progress.load", "users.save", "upload.analyse",
         "upload.publish", "stream.read", "progress.*", "upload.*")
STORAGE_SITES = ("progress.save", "progress.load", "users.save", "upload.publish")
EMAILS = ("ada@example.com", "Grace.Hopper@Example.org", "linus@example.net")
USERS = ("alice", "bob-2", "Carol_3")
PLANS = ("free", "standard", "premium")
PASSWORD = "correct horse battery staple"
MAX_UPLOAD = 256 * 1024
FAILING_DIR = ROOT / ".shockproof" / "failing-plans"  # where fault_injection's pytest plugin saves them
_examples = itertools.count()
certain_faults = fault_rules(SITES[:7], max_latency=8.0, with_triggers=False).map(
    lambda r: dataclasses.replace(r, rate=1.0, id=""))
storage_errors = st.builds(lambda site, errno, first: Rule(site, fault_injection.io(errno), first=first),
                           st.sampled_from(STORAGE_SITES), st.sampled_from(IO_ERRNOS), st.integers(1, 4))

names = st.text(st.characters(categories=("L", "N", "Zs"), codec="utf-8"), min_size=1,
                max_size=30).filter(lambda s: bool(s.strip()))
positions = st.floats(0, 7 * 24 * 3600, allow_nan=False, allow_infinity=False)
offsets = st.integers(0, 260_000)
ranges = st.one_of(
    st.none(),
    st.builds("bytes={}-{}".format, offsets, offsets),
    st.builds("bytes={}-".format, offsets),
    st.builds("bytes=-{}".format, st.integers(0, 300_000)),
    st.sampled_from(["bytes=0-1,5-9", "bytes=abc", "items=0-10", "bytes=-", "bytes= 1-2", "bytes=5-2"]),
)
INVALID_SIGNUPS: dict[str, tuple[Any, int]] = {
    "missing fields": ({"email": "x@example.com"}, 422),
    "bad email": ({"email": "not-an-email", "display_name": "X", "password": PASSWORD, "plan": "free"}, 422),
    "short password": ({"email": "x@example.com", "display_name": "X", "password": "short", "plan": "free"}, 422),
    "control char": ({"email": "x@example.com", "display_name": "a\r\nb", "password": PASSWORD, "plan": "free"}, 422),
    "bad plan": ({"email": "x@example.com", "display_name": "X", "password": PASSWORD, "plan": "gold"}, 422),
    "not an object": ([1, 2, 3], 422),
    "malformed json": (b'{"email": ', 400),
    "not utf-8": (b'{"email": "\xff\xfe"}', 400),
    "plain text": ("hello", 415),
}
INVALID_UPLOADS: dict[str, tuple[bytes | None, Any, str]] = {
    "oversize": (media.sample_wav(1)[:44] + b"\x80" * (MAX_UPLOAD + 1 - 44), 3, "audio/wav"),
    "zero duration": (media.sample_wav(1), 0, "audio/wav"),
    "negative duration": (media.sample_wav(1), -4, "audio/wav"),
    "nan duration": (media.sample_wav(1), "nan", "audio/wav"),
    "empty file": (b"", 3, "audio/wav"),
    "wrong type": (media.sample_wav(1), 3, "text/plain"),
    "wrong magic": (b"MZ\x90\x00" + b"\x00" * 4000, 3, "video/mp4"),
    "no file": (None, 3, "audio/wav"),
}


@dataclass
class ChaosEnv:
    """What every example shares: where to put data, the proxy, the test's id, run figures."""

    root: Path
    proxy: ChaosProxy
    test_id: str
    failing_dir: Path = FAILING_DIR
    failing_plan: Path | None = None
    #: Over the whole run: faults injected by kind, and response statuses (so a run that
    #: provoked nothing is noticed).
    injected: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True)
class Pending:
    """A response whose trace must be in the store: its status, problem type and kind, faults."""

    trace_id: str
    status: int
    type: str | None
    kind: str | None
    injected: bool


def saves_plan_on_failure(fn: F) -> F:
    """On any failure in a step, write the example's fault plan and say how to replay it."""
    @functools.wraps(fn)
    def wrapper(self: ChaosMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except BaseException:
            self.save_failing_plan()
            raise
    return wrapper  # type: ignore[return-value]


class ChaosMachine(RuleBasedStateMachine):
    """One example: a fresh demo app, data directory and trace store, a fake clock, no faults.

    Telemetry gets a store of its own per example: Hypothesis seeds ``random`` alike for
    every example, so trace ids (drawn from it) recur from one example to the next.
    """

    def __init__(self, env: ChaosEnv) -> None:
        super().__init__()
        self.env = env
        example = self.env.root / f"example-{next(_examples)}"
        self.data_dir, self.store = example / "data", example / "store" / "telemetry.db"
        telemetry.configure(service_name="proof-chaos", store=self.store, log_stream=io.StringIO())
        self.query = Query(self.store)
        self._clock_scope = fake_clock()
        self.clock = self._clock_scope.__enter__()
        host, port = self.env.proxy.listen
        self.app = make_demo(self.data_dir, f"http://{host}:{port}", titles=TITLES,
                             max_upload_bytes=MAX_UPLOAD)
        self.client = self.app.test_client()
        self.circuit = demo_state(self.app).circuits[0]
        self.model = CircuitModel(self.circuit.consecutive, self.circuit.open_for)
        self.ledger = Ledger()
        self.cached: set[str] = set()
        self.seed = 0
        self.armed: dict[str, Rule] = {}
        self.history: dict[str, Rule] = {}
        self.upstream_broken = False
        self.cookie_user: str | None = None
        self.injected: list[FaultInjected] = []
        self.pending: list[Pending] = []
        self.hook_errors: list[str] = []
        self.transitions_seen = 0
        self.env.proxy.clear_toxics()
        fault_injection.halt()
        resilience.add_interceptor(self._on_attempt, sites=self._catalog_site)  # before faults'
        resilience.subscribe(self._on_event)

    def teardown(self) -> None:
        resilience.unsubscribe(self._on_event)
        resilience.remove_interceptor(self._on_attempt)
        fault_injection.halt()
        self.env.proxy.clear_toxics()
        close_demo(self.app)
        self._clock_scope.__exit__(None, None, None)
        self.query.close()
        telemetry.reset()

    # -- observation -------------------------------------------------------------------------

    def _catalog_site(self, site: str) -> bool:
        return site == "catalog.fetch"

    def _on_attempt(self, info: AttemptInfo) -> None:
        self.model.attempts.append(Attempt(info.call.call_id, info.attempt))

    def _on_event(self, event: object) -> None:
        try:
            if isinstance(event, FaultInjected):
                self.injected.append(event)
            elif isinstance(event, AttemptFailed) and event.call.site == "catalog.fetch":
                self.model.failed(event.call.call_id, event.attempt, event.exception)
            elif isinstance(event, CircuitStateChanged) and event.circuit == self.circuit.name:
                self.model.transitions.append(Transition(len(self.model.attempts), event.old,
                                                         event.new, self.clock.monotonic()))
        except Exception as exc:  # a hook's errors are swallowed by resilience: keep them
            self.hook_errors.append(repr(exc))

    def save_failing_plan(self) -> None:
        """Write every rule armed in this example as a plan file and note how to replay it."""
        calls: dict[str, int] = {}
        for stats in fault_injection.stats():
            for site in stats.sites:
                calls[site] = max(calls.get(site, 0), stats.calls)
        plan = PlanFile(FaultPlan(self.seed, tuple(self.history.values())), calls, self.env.test_id)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.env.test_id)[-100:]
        path = save_plan(plan, self.env.failing_dir / f"{name}.json")
        self.env.failing_plan = path
        note(f"failing fault plan: {path}\n  replay: shockproof-faults replay {path}")

    # -- requests ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        self.injected = []
        response = self.client.open(path, method=method, **kwargs)
        response.get_data()
        response.close()
        return self._checked(response)

    def _upload(self, data: bytes | None, duration: Any, content_type: str) -> TestResponse:
        self.injected = []
        response = upload(self.client, data, duration, content_type=content_type)
        return self._checked(response)

    def _checked(self, response: TestResponse) -> TestResponse:
        """Checks every response gets: 500 only for an injected logic fault; clean problems."""
        status = response.status_code
        self.env.statuses[status] += 1
        for fault in self.injected:
            self.env.injected[fault.fault.partition("(")[0]] += 1
            event(f"injected {fault.fault.partition('(')[0]} at {fault.site}")
        logic = [f for f in self.injected if f.kind is ErrorKind.LOGIC]
        assert status != 500 or logic, f"500 without an injected logic fault: {response.get_data(as_text=True)}"
        trace_id = response.headers.get("X-Trace-Id", "")
        body = problem_body(response, data_dir=self.data_dir) if status >= 400 else None
        if body is not None:
            assert body["trace_id"] == trace_id, (body, trace_id)
        if body is not None or self.injected:
            self.pending.append(Pending(trace_id, status, body["type"] if body else None,
                                        body["kind"] if body else None, bool(self.injected)))
        return response

    def _raised(self) -> bool:
        return any(f.kind is not None for f in self.injected)

    def _trouble(self, response: TestResponse, why: str) -> None:
        """An error that only a fault may explain (one was injected into this request)."""
        assert self._raised(), f"{why}: unexpected {response.status} with no fault injected: " \
                               f"{response.get_data(as_text=True)[:400]}"

    # -- faults, the upstream, time ------------------------------------------------------------

    @initialize(plan=fault_plans(SITES, max_rules=3, max_latency=8.0, with_triggers=False))
    @saves_plan_on_failure
    def start(self, plan: FaultPlan) -> None:
        self.seed = plan.seed
        fault_injection.install(plan)
        self.armed = {r.id: r for r in plan.rules}
        self.history = dict(self.armed)

    @rule(fault=st.one_of(fault_rules(SITES, max_latency=8.0, with_triggers=False),
                          fault_rules(SITES, max_latency=8.0), storage_errors))
    @saves_plan_on_failure
    def arm(self, fault: Rule) -> None:
        if fault.id not in self.armed:
            fault_injection.add_rule(fault, seed=self.seed)
            self.armed[fault.id] = self.history[fault.id] = fault

    @rule(fault=certain_faults)
    @saves_plan_on_failure
    def arm_certain(self, fault: Rule) -> None:
        """A rule that fires on every call at a site the traffic rules reach."""
        self.arm(fault)

    @precondition(lambda self: self.armed)
    @rule(data=st.data())
    @saves_plan_on_failure
    def disarm(self, data: st.DataObject) -> None:
        rule_id = data.draw(st.sampled_from(sorted(self.armed)))
        assert fault_injection.remove_rule(rule_id)
        del self.armed[rule_id]

    @rule()
    @saves_plan_on_failure
    def halt(self) -> None:
        assert fault_injection.halt() == len(self.armed)
        self.armed.clear()

    @rule(how=st.sampled_from(["heal", "refuse", "close", "reset", "truncate"]))
    @saves_plan_on_failure
    def upstream(self, how: str) -> None:
        """Break the upstream for real through the proxy (or heal it)."""
        self.env.proxy.clear_toxics()
        self.upstream_broken = how != "heal"
        if self.upstream_broken:
            self.env.proxy.add_toxic({"refuse": down("refuse"), "close": down("close"),
                                      "reset": reset_peer(), "truncate": limit_data(120)}[how])

    @rule(seconds=st.sampled_from([1.0, 5.0, 31.0]))
    @saves_plan_on_failure
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- signups -------------------------------------------------------------------------------

    @rule(email=st.sampled_from(EMAILS), name=names, plan=st.sampled_from(PLANS), as_form=st.booleans())
    @saves_plan_on_failure
    def sign_up(self, email: str, name: str, plan: str, as_form: bool) -> None:
        fields = {"email": email, "display_name": name, "password": PASSWORD, "plan": plan}
        response = self._call("POST", "/api/signup", **({"data": fields} if as_form else {"json": fields}))
        key = email.lower()
        assert PASSWORD not in response.get_data(as_text=True)
        if response.status_code == 201:
            assert key not in self.ledger.users, f"{email} signed up twice"
            body = response.get_json()
            assert (body["display_name"], body["plan"]) == (name.strip(), plan), body
            assert f"shockproof_user={body['user_id']}" in response.headers["Set-Cookie"]
            stored = json.loads((self.data_dir / "users" / f"{body['user_id']}.json").read_bytes())
            assert verify_password(PASSWORD, stored["password_hash"])
            assert PASSWORD not in json.dumps(stored)
            self.ledger.users[key] = UserRecord(body["user_id"], key, name.strip(), plan)
            self.cookie_user = body["user_id"]
        elif response.status_code == 409:
            assert key in self.ledger.users, f"409 for {email}, which no acknowledged signup took"
        else:
            self._trouble(response, "signup")

    @rule(case=st.sampled_from(sorted(INVALID_SIGNUPS)))
    @saves_plan_on_failure
    def sign_up_invalid(self, case: str) -> None:
        payload, status = INVALID_SIGNUPS[case]
        if isinstance(payload, bytes):
            response = self._call("POST", "/api/signup", data=payload, content_type="application/json")
        elif isinstance(payload, str):
            response = self._call("POST", "/api/signup", data=payload, content_type="text/plain")
        else:
            response = self._call("POST", "/api/signup", json=payload)
        assert response.status_code == status, (case, response.get_data(as_text=True))

    # -- uploads -------------------------------------------------------------------------------

    @rule(title=st.integers(1, TITLES), duration=st.floats(0.1, 3600, allow_nan=False))
    @saves_plan_on_failure
    def upload_video(self, title: int, duration: float) -> None:
        data = media.sample_wav(title)
        response = self._upload(data, duration, "audio/wav")
        if response.status_code != 201:
            self._trouble(response, "upload")
            return
        meta = response.get_json()
        digest = hashlib.sha256(data).hexdigest()
        assert (meta["size_bytes"], meta["sha256"], meta["duration_s"], meta["bitrate_bps"]) == (
            len(data), digest, duration, round(len(data) * 8 / duration, 1)), meta
        self.ledger.uploads[meta["id"]] = meta
        self.ledger.upload_digests[meta["id"]] = digest

    @rule(case=st.sampled_from(sorted(INVALID_UPLOADS)))
    @saves_plan_on_failure
    def upload_invalid(self, case: str) -> None:
        """Invalid uploads are refused at the edge (422; 413 over the limit), faults or not."""
        data, duration, content_type = INVALID_UPLOADS[case]
        response = self._upload(data, duration, content_type)
        expected = 413 if case == "oversize" else 422
        assert response.status_code == expected, (case, response.get_data(as_text=True))

    # -- progress ------------------------------------------------------------------------------

    def _save(self, user: str, title: int, position: float, headers: dict[str, str]) -> None:
        response = self._call("PUT", f"/api/progress/{title}", json={"position_s": position}, headers=headers)
        if response.status_code != 200:
            self._trouble(response, "progress save")
            return
        body = response.get_json()
        assert (body["title_id"], body["position_s"]) == (title, position), body
        self.ledger.progress[(user, title)] = position

    @rule(user=st.sampled_from(USERS), title=st.integers(1, TITLES), position=positions,
          by_cookie=st.booleans())
    @saves_plan_on_failure
    def save_progress(self, user: str, title: int, position: float, by_cookie: bool) -> None:
        """As ``X-User``, or (``by_cookie``, once someone signed up) as the signup cookie's user."""
        if by_cookie and self.cookie_user is not None:
            self._save(self.cookie_user, title, position, {})
        else:
            self._save(user, title, position, {"X-User": user})

    @rule(user=st.sampled_from(USERS), title=st.integers(1, TITLES))
    @saves_plan_on_failure
    def read_progress(self, user: str, title: int) -> None:
        response = self._call("GET", f"/api/progress/{title}", headers={"X-User": user})
        known = self.ledger.progress.get((user, title))
        if response.status_code == 200:
            assert known is not None, f"{user}/{title} reads {response.get_json()}, nothing was acknowledged"
            assert response.get_json()["position_s"] == known, (known, response.get_json())
        elif response.status_code == 404:
            assert known is None, f"acknowledged progress {user}/{title}={known} reads as missing"
        else:
            self._trouble(response, "progress read")

    @rule(user=st.sampled_from(["../etc", "..", "a/b", "", " ", "x" * 65, "bob\x00", "%2e%2e"]),
          write=st.booleans())
    @saves_plan_on_failure
    def progress_with_bad_user(self, user: str, write: bool) -> None:
        kwargs: dict[str, Any] = {"json": {"position_s": 1.0}} if write else {}
        response = self._call("PUT" if write else "GET", "/api/progress/1", headers={"X-User": user}, **kwargs)
        assert response.status_code == 422, response.get_data(as_text=True)

    # -- catalog and titles ----------------------------------------------------------------------

    def _catalog(self, path: str, key: str, document: dict[str, Any] | None) -> None:
        """``document`` is what the upstream has (None: no such title)."""
        was_open = self.circuit.state == "open"
        attempts = len(self.model.attempts)
        response = self._call("GET", path)
        trouble = self.upstream_broken or self.circuit.state != "closed" or was_open or self.injected
        if was_open and self.circuit.state == "open":
            assert len(self.model.attempts) == attempts, "an open circuit let a call through"
        status = response.status_code
        if status == 200:
            body = response.get_json()
            assert document is not None
            assert {k: v for k, v in body.items() if k not in ("degraded", "cached_at")} == document
            assert trouble or not body["degraded"], f"degraded with a healthy upstream: {body}"
            assert body["degraded"] == (response.headers.get("X-Shockproof-Degraded") == "1")
            assert not body["degraded"] or key in self.cached, f"degraded {key} never cached"
            self.cached.add(key)
        elif status == 404:
            assert document is None, response.get_data(as_text=True)
        elif status == 503:
            assert trouble, "503 from a healthy upstream"
            assert key not in self.cached, f"503 although {key} was cached"
            assert "Retry-After" in response.headers
        else:
            assert self._raised(), f"{path}: unexpected {response.status}: {response.get_data(as_text=True)}"

    @rule()
    @saves_plan_on_failure
    def browse_catalog(self) -> None:
        self._catalog("/api/catalog", "catalog", catalog_document())

    @rule(title=st.integers(0, TITLES + 2))
    @saves_plan_on_failure
    def browse_title(self, title: int) -> None:
        self._catalog(f"/api/titles/{title}", f"title-{title}",
                      title_document(title) if 1 <= title <= TITLES else None)

    # -- streams ---------------------------------------------------------------------------------

    @rule(title=st.integers(1, TITLES + 1), header=ranges)
    @saves_plan_on_failure
    def stream(self, title: int, header: str | None) -> None:
        response = self._call("GET", f"/api/stream/{title}", headers={"Range": header} if header else {})
        if title > TITLES:
            assert response.status_code == 404 or self._raised(), response.status
            return
        data = media.sample_wav(title)
        wanted = expected_range(header, len(data))
        status = response.status_code
        if wanted is None:
            assert (status == 200 and response.get_data() == data) or (status >= 400 and self._raised()), (header, status)
        elif not isinstance(wanted, tuple):
            assert status == 416 or self._raised(), (header, response.status)
        else:
            first, last = wanted
            assert (status == 206 and response.get_data() == data[first:last + 1]
                    and response.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}") \
                or (status >= 400 and self._raised()), (header, status)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    @saves_plan_on_failure
    def no_temporary_or_partial_files(self) -> None:
        assert leftovers(self.data_dir) == []

    @invariant()
    @saves_plan_on_failure
    def acknowledged_writes_are_intact(self) -> None:
        assert self.ledger.problems(self.data_dir) == []

    @invariant()
    @saves_plan_on_failure
    def errors_and_faults_are_in_the_store(self) -> None:
        if not self.pending:
            return
        assert telemetry.flush(10.0)
        for pending in self.pending:
            self._traced(pending)
        self.pending.clear()

    def _traced(self, pending: Pending) -> None:
        detail = self.query.trace(pending.trace_id)
        assert detail is not None, f"no trace {pending}"
        span, log = request_span(detail), request_log(detail)
        assert span.attributes.get("http.response.status_code") == pending.status, (pending, span)
        assert log.attributes.get("http.response.status_code") == pending.status, (pending, log)
        if pending.type in RUNTIME_TYPES:
            assert span.attributes.get("shockproof.kind") == pending.kind, (pending, span.attributes)
            assert log.attributes.get("shockproof.kind") == pending.kind, (pending, log.attributes)
        if pending.injected:
            assert any(s.attributes.get("shockproof.fault.injected") is True for s in detail.spans), pending
            assert any(line.event == "shockproof.fault.injected" for line in detail.logs), pending

    @invariant()
    @saves_plan_on_failure
    def circuit_matches_failure_history(self) -> None:
        assert self.hook_errors == []
        for transition in self.model.transitions[self.transitions_seen:]:
            event(f"circuit {transition.old} -> {transition.new}")
        self.transitions_seen = len(self.model.transitions)
        assert self.model.problems(self.circuit.state, self.clock.monotonic()) == []
