"""``guard()`` and ``Policy``: the fixed composition of the resilience layers.

Outermost first::

    validate -> fallback -> retry (inside the overall deadline) -> circuit
             -> bulkhead -> per-attempt deadline -> interceptors -> the call

The success path is one direct call with a state check on either side: no
allocation, no tenacity, no lock (rate-mode circuits take theirs to record).
Everything else (events, backoff on tenacity's wait strategies, the budget)
starts at the first failure.

Generators and async generators: the policy guards establishing the stream, up
to its first item (retries, deadlines and the fallback apply there); the
bulkhead slot is held until the stream ends, and a failure mid-stream is
recorded by the circuit and raised, never retried (items were already seen).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar, cast

from . import _config
from ._budget import RetryBudget
from ._bulkhead import Bulkhead
from ._circuit import Circuit
from ._classify import ErrorKind, classify
from ._config import get_settings
from ._deadline import _expiry, _tighter
from ._errors import (
    BulkheadFull,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    ValidationFailed,
    _attach_attempts,
)
from ._events import (
    AttemptFailed,
    AttemptInfo,
    CallFinished,
    CallInfo,
    CallRejected,
    DeadlineExpired,
    ExhaustedReason,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    ValidationRejected,
    emit,
    hub,
    next_call_id,
    run_interceptors,
    wants,
)
from ._retry import Retry, retry_after_of
from ._validate import Validator, make_checker

#: Bound once: the fast path calls them on every guarded call.
_get_expiry, _set_expiry, _reset_expiry = _expiry.get, _expiry.set, _expiry.reset

P = ParamSpec("P")
R = TypeVar("R")
_DONE = object()


class _Established:
    """A stream that produced its first item (or ended at once: ``first is _DONE``)."""

    __slots__ = ("first", "stream")

    def __init__(self, stream: Any, first: Any) -> None:
        self.stream = stream
        self.first = first


def handled_by_fallback(exc: BaseException) -> bool:
    """Default for ``fallback_on``: rejections, deadlines, network and I/O failures."""
    if isinstance(exc, CircuitOpenError | BulkheadFull | DeadlineExceeded):
        return True
    return classify(exc).kind in (ErrorKind.NETWORK, ErrorKind.IO)


class _Tracker:
    """Per-call bookkeeping, made only when someone listens (hooks or interceptors)."""

    __slots__ = ("_info", "attempt_t0", "attempts", "eventful", "site", "started_ns", "t0")

    def __init__(self, site: str, started_ns: int = 0, t0: float | None = None) -> None:
        self.site = site
        self.started_ns = started_ns or time.time_ns()
        self.t0 = self.attempt_t0 = get_settings().clock.monotonic() if t0 is None else t0
        self._info: CallInfo | None = None
        self.eventful = False
        self.attempts = 1  # attempts made so far (for CallFinished)

    @property
    def info(self) -> CallInfo:
        if self._info is None:
            self._info = CallInfo(self.site, next_call_id(), self.started_ns)
        return self._info

    def emit(self, event_type: Callable[..., object], *fields: Any) -> None:
        """Note that something happened; build the event only if someone listens."""
        self.eventful = True
        if hub.hooks:
            emit(event_type(self.info, *fields))


def _tracker(site: str, timed: bool, intercepted: bool) -> _Tracker | None:
    """A tracker when someone listens, or when the policy must time the whole call."""
    return _Tracker(site) if (timed or intercepted or hub.hooks) else None


class Policy:
    """A reusable, immutable composition of resilience layers around calls."""

    __slots__ = ("_budget", "_fallback_on", "_igen", "_iwant", "_plain", "_timed", "attempt_timeout", "bulkhead", "circuit", "deadline",
                 "fallback", "name", "retry", "validate")

    def __init__(
        self,
        name: str,
        *,
        retry: Retry | None = None,
        circuit: Circuit | None = None,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        bulkhead: Bulkhead | None = None,
        fallback: Callable[[BaseException], Any] | None = None,
        fallback_on: Callable[[BaseException], bool] = handled_by_fallback,
        validate: Validator | None = None,
    ) -> None:
        _check(name, retry, circuit, deadline, attempt_timeout, bulkhead, fallback, validate, fallback_on)
        self.name = name
        self.retry = retry
        self.circuit = circuit
        self.deadline = float(deadline) if deadline is not None else None
        self.attempt_timeout = float(attempt_timeout) if attempt_timeout is not None else None
        self.bulkhead = bulkhead
        self.fallback = fallback
        self._fallback_on = fallback_on
        self.validate = validate
        self._budget = (RetryBudget(retry.budget, retry.budget_burst)
                        if retry is not None and retry.budget is not None else None)
        self._igen = -1
        self._iwant = False
        #: max_time needs the call's start time, so such calls always get a tracker.
        self._timed = retry is not None and retry.max_time is not None
        #: Only layers the inlined fast path handles (see _run_fast).
        self._plain = bulkhead is None and attempt_timeout is None and not self._timed

    def _intercepted(self) -> bool:
        """Does any interceptor want this site? Cached per interceptor generation."""
        generation = hub.generation
        if self._igen != generation:
            self._iwant = wants(self.name)
            self._igen = generation
        return self._iwant

    # -- description -----------------------------------------------------------------

    def layers(self) -> list[str]:
        """The layers in force, outermost first."""
        out = []
        if self.validate is not None:
            out.append(f"validate({getattr(self.validate, '__name__', repr(self.validate))})")
        if self.fallback is not None:
            out.append(f"fallback({getattr(self.fallback, '__name__', 'callable')})")
        if self.retry is not None:
            out.append(self.retry.describe())
        if self.deadline is not None:
            out.append(f"deadline({self.deadline}s overall)")
        if self.circuit is not None:
            out.append(self.circuit.describe())
        if self.bulkhead is not None:
            out.append(self.bulkhead.describe())
        if self.attempt_timeout is not None:
            out.append(f"attempt_timeout({self.attempt_timeout}s)")
        out.append("call")
        return out

    def describe(self) -> str:
        """One line per layer, outermost first, e.g. for logs and the README."""
        return f"policy {self.name!r}:\n" + "\n".join(
            f"  {'  ' * i}-> {layer}" for i, layer in enumerate(self.layers())
        )

    def __repr__(self) -> str:
        return f"Policy({self.name!r}: {' -> '.join(self.layers())})"

    # -- wrapping --------------------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync, async, generator or async generator), keeping its signature."""
        check = make_checker(self.validate, fn) if self.validate is not None else None
        if inspect.isasyncgenfunction(fn):
            wrapper: Any = self._wrap_asyncgen(fn, check)
        elif inspect.iscoroutinefunction(fn):
            wrapper = self._wrap_async(fn, check)
        elif inspect.isgeneratorfunction(fn):
            wrapper = self._wrap_gen(fn, check)
        else:
            wrapper = self._wrap_sync(fn, check)
        wrapper = functools.wraps(fn)(wrapper)
        wrapper.__shockproof_policy__ = self
        return cast(Callable[P, R], wrapper)

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run one sync call of ``fn`` under this policy."""
        result: R = self._run(fn, args, kwargs, None)
        return result

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Run one async call of ``fn`` under this policy."""
        result: R = await self._arun(fn, args, kwargs, None)
        return result

    def _wrap_sync(self, fn: Callable[..., Any], check: Any) -> Callable[..., Any]:
        run, fast, intercepted = self._run, self._run_fast, self._intercepted
        if self._plain and check is None:
            def fast_guarded(*args: Any, **kwargs: Any) -> Any:
                if hub.interceptors and intercepted():
                    return run(fn, args, kwargs, None)
                if hub.hooks:
                    return fast(fn, args, kwargs, time.time_ns())
                return fast(fn, args, kwargs)
            return fast_guarded

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return run(fn, args, kwargs, check)

        return guarded

    def _wrap_async(self, fn: Callable[..., Any], check: Any) -> Callable[..., Any]:
        arun = self._arun

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await arun(fn, args, kwargs, check)

        return guarded

    def _wrap_gen(self, fn: Callable[..., Iterator[Any]], check: Any) -> Callable[..., Any]:
        policy = self

        def guarded(*args: Any, **kwargs: Any) -> Iterator[Any]:
            # A generator function itself (not one returning a generator): keeps the kind.
            yield from policy._stream(fn, args, kwargs, check)

        return guarded

    def _wrap_asyncgen(self, fn: Callable[..., AsyncIterator[Any]], check: Any) -> Callable[..., Any]:
        policy = self

        async def guarded(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            # An async generator function itself: keeps the kind; closing it closes the stream.
            stream = policy._astream(fn, args, kwargs, check)
            try:
                async for item in stream:
                    yield item
            finally:
                await stream.aclose()

        return guarded

    # -- sync ----------------------------------------------------------------------------

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             check: Any, keep_slot: bool = False) -> Any:
        intercepted = bool(hub.interceptors) and self._intercepted()
        if self._plain and check is None and not intercepted:
            return self._run_fast(fn, args, kwargs, time.time_ns() if hub.hooks else 0)
        tr = _tracker(self.name, self._timed, intercepted)
        if check is not None:
            self._validate(check, args, kwargs, tr)
        if self._budget is not None:
            self._budget.record_call()
        try:
            if self.deadline is None:
                result = self._retry_sync(fn, args, kwargs, tr, keep_slot)
            else:
                token = _expiry.set(_tighter(get_settings().clock.monotonic() + self.deadline,
                                             self.deadline))
                try:
                    result = self._retry_sync(fn, args, kwargs, tr, keep_slot)
                finally:
                    _expiry.reset(token)
        except Exception as exc:
            value = self._fallback(exc, tr)
            self._finish(tr, "fallback", exc)
            return value
        if tr is not None:
            self._finish(tr, "success", None)
        return result

    def _run_fast(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                  started_ns: int = 0) -> Any:
        """The common case inlined: only retry, circuit and deadline layers, no interceptor.

        With ``started_ns`` (hooks listen) the call is *observed*: the same path plus a
        start stamp; the tracker, seeded with the call's true start, is made only at the
        first failure or rejection, or at the end of a slow call. Successful calls that
        are quick build nothing.
        """
        budget = self._budget
        if budget is not None:
            budget._calls += 1
        circuit = self.circuit
        token = None
        tr: _Tracker | None = None
        admitted = circuit is None
        budget_s = self.deadline
        t0 = _config._settings.clock.monotonic() if budget_s is not None or started_ns else 0.0
        try:
            if budget_s is not None:
                expiry = t0 + budget_s
                outer = _get_expiry()
                token = _set_expiry(outer if outer is not None and outer[0] <= expiry
                                    else (expiry, budget_s))
            try:
                if circuit is None:
                    result = fn(*args, **kwargs)
                else:
                    probe = 0 if circuit.free else circuit.acquire()
                    admitted = True
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:
                        circuit.record_failure(exc, probe)
                        raise
                    if not circuit.quiet:
                        sink = circuit.window_sink
                        if sink is not None and not probe:
                            sink(False)
                        else:
                            circuit.record_success(probe)
            except Exception as exc:
                if started_ns:
                    tr = _Tracker(self.name, started_ns, t0)
                    if not admitted and isinstance(exc, CircuitOpenError):
                        self._rejected(tr, "circuit_open", exc.circuit, exc.retry_after)
                result = self._retry_sync(fn, args, kwargs, tr, False, first=exc)
            finally:
                if token is not None:
                    _reset_expiry(token)
        except Exception as exc:
            if started_ns and tr is None:
                tr = _Tracker(self.name, started_ns, t0)
            value = self._fallback(exc, tr)
            self._finish(tr, "fallback", exc)
            return value
        if started_ns:
            if tr is None:
                settings = _config._settings
                if settings.clock.monotonic() - t0 < settings.slow_call:
                    return result
                tr = _Tracker(self.name, started_ns, t0)
            self._finish(tr, "success", None)
        return result

    def _retry_sync(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                    tr: _Tracker | None, keep_slot: bool, first: Exception | None = None) -> Any:
        attempt = 1
        while True:
            try:
                if first is None:
                    return self._attempt_sync(fn, args, kwargs, attempt, tr, keep_slot)
                exc, first = first, None
                raise exc
            except Exception as exc:
                wait = self._after_failure(exc, attempt, tr)
                if wait > 0:
                    get_settings().clock.sleep(wait)
                attempt += 1

    def _attempt_sync(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                      attempt: int, tr: _Tracker | None, keep_slot: bool) -> Any:
        circuit, bulkhead = self.circuit, self.bulkhead
        probe = self._acquire_circuit(tr) if circuit is not None else False
        if bulkhead is not None:
            try:
                bulkhead.acquire(self.name)
            except BulkheadFull:
                self._rejected(tr, "bulkhead_full", bulkhead.name or self.name, None)
                if circuit is not None:
                    circuit.record_failure(_NOT_COUNTED, probe)
                raise
        ok = False
        try:
            if tr is not None:
                tr.attempt_t0 = get_settings().clock.monotonic()
            if self.attempt_timeout is None:
                if tr is not None and hub.interceptors and self._intercepted():
                    self._intercept(tr, attempt)
                result = fn(*args, **kwargs)
            else:
                budget = self.attempt_timeout
                token = _expiry.set(_tighter(get_settings().clock.monotonic() + budget, budget))
                try:
                    if tr is not None and hub.interceptors and self._intercepted():
                        self._intercept(tr, attempt)
                    result = fn(*args, **kwargs)
                finally:
                    _expiry.reset(token)
            ok = True
        except BaseException as exc:
            if circuit is not None:
                circuit.record_failure(exc, probe)
            raise
        finally:
            if bulkhead is not None and not (ok and keep_slot):
                bulkhead.release()
        if circuit is not None:
            circuit.record_success(probe)
        return result

    def _intercept(self, tr: _Tracker, attempt: int) -> None:
        delay = run_interceptors(AttemptInfo(self.name, attempt, tr.info))
        if delay > 0:
            tr.eventful = True  # injected latency: the call will report CallFinished
            get_settings().clock.sleep(delay)
            _check_expired(self.name)

    # -- async -----------------------------------------------------------------------------

    async def _arun(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                    kwargs: dict[str, Any], check: Any, keep_slot: bool = False) -> Any:
        tr = _tracker(self.name, self._timed, bool(hub.interceptors) and self._intercepted())
        if check is not None:
            self._validate(check, args, kwargs, tr)
        if self._budget is not None:
            self._budget.record_call()
        try:
            if self.deadline is None:
                result = await self._aretry(fn, args, kwargs, tr, keep_slot)
            else:
                result = await self._within(self.deadline, self._aretry(fn, args, kwargs, tr, keep_slot), tr)
        except Exception as exc:
            value = self._fallback(exc, tr)
            if inspect.isawaitable(value):
                value = await value
            self._finish(tr, "fallback", exc)
            return value
        if tr is not None:
            self._finish(tr, "success", None)
        return result

    async def _within(self, budget: float, aw: Awaitable[Any], tr: _Tracker | None) -> Any:
        """Await ``aw`` within ``budget`` seconds: remaining() sees it, asyncio cancels at it."""
        token = _expiry.set(_tighter(get_settings().clock.monotonic() + budget, budget))
        scope = asyncio.timeout(budget)
        try:
            async with scope:
                return await aw
        except TimeoutError:
            if not scope.expired():
                raise
            if tr is not None:
                tr.emit(DeadlineExpired, budget)
            raise DeadlineExceeded(budget, self.name) from None
        finally:
            _expiry.reset(token)

    async def _aretry(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                      kwargs: dict[str, Any], tr: _Tracker | None, keep_slot: bool) -> Any:
        attempt = 1
        while True:
            try:
                return await self._aattempt(fn, args, kwargs, attempt, tr, keep_slot)
            except Exception as exc:
                wait = self._after_failure(exc, attempt, tr)
                if wait > 0:
                    await get_settings().clock.asleep(wait)
                attempt += 1

    async def _aattempt(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                        kwargs: dict[str, Any], attempt: int, tr: _Tracker | None,
                        keep_slot: bool) -> Any:
        circuit, bulkhead = self.circuit, self.bulkhead
        probe = self._acquire_circuit(tr) if circuit is not None else False
        if bulkhead is not None:
            try:
                await bulkhead.acquire_async(self.name)
            except BulkheadFull:
                self._rejected(tr, "bulkhead_full", bulkhead.name or self.name, None)
                if circuit is not None:
                    circuit.record_failure(_NOT_COUNTED, probe)
                raise
        ok = False
        try:
            if tr is not None:
                tr.attempt_t0 = get_settings().clock.monotonic()
            if self.attempt_timeout is None:
                result = await self._aintercepted(fn, args, kwargs, attempt, tr)
            else:
                result = await self._within(
                    self.attempt_timeout, self._aintercepted(fn, args, kwargs, attempt, tr), None)
            ok = True
        except BaseException as exc:
            if circuit is not None:
                circuit.record_failure(exc, probe)
            raise
        finally:
            if bulkhead is not None and not (ok and keep_slot):
                bulkhead.release()
        if circuit is not None:
            circuit.record_success(probe)
        return result

    async def _aintercepted(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                            kwargs: dict[str, Any], attempt: int, tr: _Tracker | None) -> Any:
        if tr is not None and hub.interceptors and self._intercepted():
            delay = run_interceptors(AttemptInfo(self.name, attempt, tr.info))
            if delay > 0:
                tr.eventful = True  # injected latency: the call will report CallFinished
                await get_settings().clock.asleep(delay)
                _check_expired(self.name)
        return await fn(*args, **kwargs)

    # -- generators ------------------------------------------------------------------------

    def _stream(self, fn: Callable[..., Iterator[Any]], args: tuple[Any, ...],
                kwargs: dict[str, Any], check: Any) -> Iterator[Any]:
        def start() -> _Established:
            gen = fn(*args, **kwargs)
            try:
                return _Established(gen, next(gen))
            except StopIteration:
                return _Established(gen, _DONE)

        established = self._run(start, (), {}, check, keep_slot=True)
        if not isinstance(established, _Established):
            yield from established  # the fallback answered: an iterable of items
            return
        gen, first = established.stream, established.first
        try:
            if first is _DONE:
                return
            yield first
            yield from self._rest(cast(Iterator[Any], gen))
        finally:
            if self.bulkhead is not None:
                self.bulkhead.release()

    def _rest(self, gen: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from gen
        except Exception as exc:
            if self.circuit is not None:
                self.circuit.record_failure(exc, False)
            raise

    async def _astream(self, fn: Callable[..., AsyncIterator[Any]], args: tuple[Any, ...],
                       kwargs: dict[str, Any], check: Any) -> AsyncGenerator[Any, None]:
        async def start() -> _Established:
            agen = fn(*args, **kwargs)
            try:
                return _Established(agen, await agen.__anext__())
            except StopAsyncIteration:
                return _Established(agen, _DONE)

        established = await self._arun(start, (), {}, check, keep_slot=True)
        if not isinstance(established, _Established):
            if hasattr(established, "__aiter__"):
                async for item in established:
                    yield item
            else:
                for item in established:
                    yield item
            return
        agen, first = established.stream, established.first
        try:
            if first is _DONE:
                return
            yield first
            try:
                async for item in cast(AsyncIterator[Any], agen):
                    yield item
            except Exception as exc:
                if self.circuit is not None:
                    self.circuit.record_failure(exc, False)
                raise
        finally:
            if self.bulkhead is not None:
                self.bulkhead.release()

    # -- shared slow paths -----------------------------------------------------------------

    def _validate(self, check: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  tr: _Tracker | None) -> None:
        try:
            check(args, kwargs)
        except ValidationFailed as exc:
            if tr is not None:
                tr.emit(ValidationRejected, list(exc.errors))
                self._finish(tr, "error", exc)
            raise

    def _acquire_circuit(self, tr: _Tracker | None) -> int:
        circuit = cast(Circuit, self.circuit)
        try:
            return circuit.acquire()
        except CircuitOpenError as exc:
            self._rejected(tr, "circuit_open", circuit.name, exc.retry_after)
            raise

    def _rejected(self, tr: _Tracker | None, reason: Any, target: str, retry_after: float | None) -> None:
        if tr is not None:
            tr.emit(CallRejected, reason, target, retry_after)

    def _after_failure(self, exc: Exception, attempt: int, tr: _Tracker | None) -> float:
        """Decide about a failed attempt: return the wait before the next one, or raise ``exc``."""
        if tr is not None and not isinstance(exc, CircuitOpenError | BulkheadFull):
            if hub.hooks:  # classify and time the attempt only for someone who listens
                c = classify(exc)
                duration = get_settings().clock.monotonic() - tr.attempt_t0
                tr.emit(AttemptFailed, attempt, exc, c.kind, c.transient, duration)
            else:
                tr.eventful = True
        decision = self._decide(exc, attempt, tr)
        if isinstance(decision, str):
            _attach_attempts(exc, attempt)
            if tr is not None and self.retry is not None:
                tr.emit(RetriesExhausted, attempt, exc, cast(ExhaustedReason, decision))
                if decision == "deadline":
                    budget = _expiry.get()
                    tr.emit(DeadlineExpired, budget[1] if budget else 0.0)
            raise exc
        if tr is not None:
            tr.attempts = attempt + 1
            tr.emit(RetryScheduled, attempt, decision, exc)
        return decision if get_settings().waits else 0.0

    def _decide(self, exc: Exception, attempt: int, tr: _Tracker | None) -> float | str:
        retry = self.retry
        if retry is None or not retry.on(exc):
            return "permanent"
        if attempt >= retry.attempts:
            return "attempts"
        settings = get_settings()
        wait = max(0.0, float(retry.backoff(attempt)))
        hint = retry_after_of(exc)
        if hint is not None:
            if hint > retry.max_retry_after:
                return "retry_after"
            wait = max(wait, hint)
        effective = wait if settings.waits else 0.0
        now = settings.clock.monotonic()
        if retry.max_time is not None and tr is not None and now - tr.t0 + effective > retry.max_time:
            return "max_time"
        current = _expiry.get()
        if current is not None and now + effective >= current[0]:
            return "deadline"
        if self._budget is not None and not self._budget.try_spend():
            return "budget"
        return wait

    def _fallback(self, exc: Exception, tr: _Tracker | None) -> Any:
        if self.fallback is None or not self._fallback_on(exc):
            if tr is not None:
                self._finish(tr, "error", exc)
            raise exc
        if tr is not None:
            tr.emit(FallbackUsed, exc)
        return self.fallback(exc)

    @staticmethod
    def _finish(tr: _Tracker | None, outcome: Any, exc: BaseException | None) -> None:
        if tr is None or not hub.hooks:
            return
        duration = get_settings().clock.monotonic() - tr.t0
        if tr.eventful or duration >= get_settings().slow_call:
            attempts = getattr(exc, "__shockproof_attempts__", tr.attempts) if exc is not None else tr.attempts
            emit(CallFinished(tr.info, duration, outcome, exc, attempts))
            tr.eventful = False  # report once


class _NotCounted(Exception):
    """Stands for "no outcome" when a probe slot is given back without a call."""


_NOT_COUNTED = _NotCounted()


def _check_expired(site: str) -> None:
    current = _expiry.get()
    if current is not None and current[0] <= get_settings().clock.monotonic():
        raise DeadlineExceeded(current[1], site)


def _check(name: str, retry: Any, circuit: Any, deadline: Any, attempt_timeout: Any,
           bulkhead: Any, fallback: Any, validate: Any, fallback_on: Any) -> None:
    problems = []
    if not isinstance(name, str) or not name:
        problems.append("name must be a non-empty string")
    for label, value, tp in (("retry", retry, Retry), ("circuit", circuit, Circuit),
                             ("bulkhead", bulkhead, Bulkhead)):
        if value is not None and not isinstance(value, tp):
            problems.append(f"{label}= must be a {tp.__name__}, got {value!r}")
    for label, value in (("deadline", deadline), ("attempt_timeout", attempt_timeout)):
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                               and value > 0 and math.isfinite(value))
        if not ok:
            problems.append(f"{label}= must be a positive number of seconds, got {value!r}")
    if fallback is not None and not callable(fallback):
        problems.append(f"fallback= must be callable, got {fallback!r}")
    if not callable(fallback_on):
        problems.append(f"fallback_on= must be callable, got {fallback_on!r}")
    if validate is not None and not callable(validate):
        problems.append(f"validate= must be a pydantic model or callable, got {validate!r}")
    if problems:
        raise ConfigurationError(f"guard({name!r}): " + "; ".join(problems))


def guard(
    name: str,
    *,
    retry: Retry | None = None,
    circuit: Circuit | None = None,
    deadline: float | None = None,
    attempt_timeout: float | None = None,
    bulkhead: Bulkhead | None = None,
    fallback: Callable[[BaseException], Any] | None = None,
    fallback_on: Callable[[BaseException], bool] = handled_by_fallback,
    validate: Validator | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function with a :class:`Policy` built from these layers.

    ``name`` is the call site's name: events, telemetry and fault injection use it.
    """
    return Policy(name, retry=retry, circuit=circuit, deadline=deadline,
                  attempt_timeout=attempt_timeout, bulkhead=bulkhead, fallback=fallback,
                  fallback_on=fallback_on, validate=validate)


def policy_of(fn: Callable[..., Any]) -> Policy | None:
    """The policy a guarded function runs under, if any."""
    found = getattr(fn, "__shockproof_policy__", None)
    return found if isinstance(found, Policy) else None
