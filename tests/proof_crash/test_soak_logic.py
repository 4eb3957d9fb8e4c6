"""The soak's arithmetic (``bench/_soak_logic.py``) on made-up samples: no network, no clock."""

from __future__ import annotations

import pytest

from bench._soak_logic import (
    Ledger,
    Outcome,
    Sample,
    figures,
    first_at,
    outcome,
    percentile,
    within,
)


def _sample(status: int | None, *, kind: str | None = None, degraded: bool = False,
            start: float = 0.0, end: float = 0.01) -> Sample:
    return Sample("p", "GET /x", start, end, status, kind, degraded, "" if status else "ConnectionError")


# -- percentiles -----------------------------------------------------------------------------


def test_percentile_is_the_nearest_rank() -> None:
    """p50 of 1..10 is 5, p99 is 10, p10 is 1 (nearest rank, no interpolation)."""
    values = [float(v) for v in range(1, 11)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 10)) == (5.0, 10.0, 1.0)


def test_percentile_of_nothing_is_none() -> None:
    """An empty sequence has no percentile."""
    assert percentile([], 99) is None


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_rejects_a_rank_outside_0_to_100(q: float) -> None:
    """q must lie in (0, 100]."""
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], q)


# -- what counts as success ------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 206])
def test_a_2xx_is_ok(status: int) -> None:
    """Any 2xx answer succeeded."""
    assert outcome(_sample(status)) is Outcome.OK


def test_a_degraded_200_is_served_and_marked_apart() -> None:
    """A 200 from the cache while the upstream fails is a success of its own kind."""
    assert outcome(_sample(200, degraded=True)) is Outcome.DEGRADED


def test_a_500_of_kind_logic_is_a_logic_fault() -> None:
    """A 500 whose problem body says kind logic is a candidate injected logic fault."""
    assert outcome(_sample(500, kind="logic")) is Outcome.LOGIC_FAULT


@pytest.mark.parametrize(("status", "kind"), [(503, "io"), (500, "network"), (502, None), (422, "validation"),
                                              (404, None), (None, None)])
def test_errors_and_transport_failures_are_failures(status: int | None, kind: str | None) -> None:
    """5xx of other kinds, unexpected 4xx and no answer at all are failures."""
    assert outcome(_sample(status, kind=kind)) is Outcome.FAILED


def test_success_rate_leaves_out_injected_logic_faults() -> None:
    """98 OK, 1 degraded, 1 failed and 2 logic 500s with 2 hits: 99 of 100 succeeded."""
    samples = [_sample(200)] * 98 + [_sample(200, degraded=True), _sample(503, kind="io")]
    found = figures(samples + [_sample(500, kind="logic")] * 2, logic_hits=2)
    assert (found.success_rate, found.logic_faults_excluded, found.failed, found.degraded) == (0.99, 2, 1, 1)


def test_logic_500s_beyond_the_plans_hits_are_failures() -> None:
    """Three logic 500s but one injected hit: two are real failures."""
    found = figures([_sample(200)] * 7 + [_sample(500, kind="logic")] * 3, logic_hits=1)
    assert (found.logic_faults_excluded, found.failed, found.success_rate) == (1, 2, 7 / 9)


def test_failures_are_listed_by_route_and_status() -> None:
    """Failure reasons name the route and the status (or the exception)."""
    found = figures([_sample(503, kind="io"), _sample(None), _sample(200)])
    assert found.failures == {"GET /x -> 503 io": 1, "GET /x -> ConnectionError": 1}


def test_latency_percentiles_are_in_milliseconds() -> None:
    """Latencies of 10, 20 and 30 ms give p50 20 ms and p99 30 ms."""
    found = figures([_sample(200, end=t) for t in (0.01, 0.02, 0.03)])
    assert (found.p50_ms, found.p99_ms) == (20.0, 30.0)


# -- the ledger ------------------------------------------------------------------------------


def _ledger(*writes: tuple[float, bool]) -> Ledger:
    ledger = Ledger()
    for value, acked in writes:
        ledger.answered("k", ledger.sent("k", value), acked)
    return ledger


def test_a_read_may_return_the_last_acknowledged_value_or_a_later_unanswered_one() -> None:
    """After 1 (acked), 2 (acked), 3 (failed): 2 and 3 are consistent."""
    ledger = _ledger((1.0, True), (2.0, True), (3.0, False))
    assert ledger.allowed("k") == (2.0, 3.0)
    assert ledger.check("k", 2.0) is None
    assert ledger.check("k", 3.0) is None


def test_an_older_value_than_the_last_acknowledged_is_a_loss() -> None:
    """Reading 1 after 2 was acknowledged means 2 was lost."""
    lost = _ledger((1.0, True), (2.0, True)).check("k", 1.0)
    assert lost is not None
    assert (lost.observed, lost.allowed) == (1.0, (2.0,))


def test_nothing_saved_after_an_acknowledgement_is_a_loss() -> None:
    """A 404 (None) after an acknowledged write is a loss."""
    assert _ledger((1.0, True)).check("k", None) is not None


def test_nothing_saved_is_fine_before_any_acknowledgement() -> None:
    """With only failed writes, None and each failed value are consistent."""
    ledger = _ledger((1.0, False), (2.0, False))
    assert ledger.allowed("k") == (None, 1.0, 2.0)


def test_failed_writes_before_an_acknowledged_one_are_not_allowed() -> None:
    """A failed write followed by an acknowledged one can no longer be read back."""
    assert _ledger((1.0, False), (2.0, True)).check("k", 1.0) is not None


def test_check_all_reports_every_key_read_wrongly_or_not_at_all() -> None:
    """Keys missing from the reads count as nothing saved."""
    ledger = Ledger()
    for key in ("a", "b", "c"):
        ledger.answered(key, ledger.sent(key, 5.0), True)
    assert [lost.key for lost in ledger.check_all({"a": 5.0, "b": 4.0})] == ["b", "c"]


def test_acknowledged_counts_every_key() -> None:
    """acknowledged() counts acknowledged writes over all keys."""
    ledger = _ledger((1.0, True), (2.0, False), (3.0, True))
    ledger.answered("other", ledger.sent("other", 1.0), True)
    assert ledger.acknowledged() == 3


# -- the circuit's timeline ------------------------------------------------------------------


TIMELINE = [(0.0, "closed"), (1.0, "open"), (1.5, "open"), (2.0, "open"), (2.5, "half-open"), (3.0, "open")]


def test_first_at_finds_the_first_observation_of_a_state_after_a_time() -> None:
    """The first open observation at or after 1.2 is at 1.5; closed is never seen after 0.5."""
    assert (first_at(TIMELINE, "open", 1.2), first_at(TIMELINE, "closed", 0.5)) == (1.5, None)


def test_within_keeps_only_samples_wholly_inside_a_state() -> None:
    """Samples overlapping a closed or half-open observation, or the timeline's ends, are left out."""
    inside = _sample(200, start=1.1, end=1.9)
    samples = [inside, _sample(200, start=0.5, end=1.2), _sample(200, start=2.1, end=2.6),
               _sample(200, start=3.1, end=3.2)]
    assert within(samples, TIMELINE, "open") == [inside]
