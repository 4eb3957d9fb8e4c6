"""configure(): arguments, environment, defaults; no-op before, warn twice, reset restores."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.util._once import Once

import resilience
import telemetry
from telemetry import ConfigurationError, RedactionRules, TelemetryWarning
from telemetry._config import DEFAULT_STORE, resolve
from telemetry._tracing import GlobalTracerProvider

from .conftest import json_lines


def quiet(**settings: Any) -> telemetry.TelemetryConfig:
    """configure() without a store, logs into a throwaway stream."""
    return telemetry.configure(**{"store": False, "log_stream": io.StringIO(), **settings})


def test_tracer_before_configure_is_a_no_op() -> None:
    """Before configure(), spans from get_tracer() record nothing."""
    with telemetry.get_tracer("t").start_as_current_span("early") as span:
        assert not span.is_recording()


def test_tracer_taken_before_configure_records_after_it() -> None:
    """A tracer obtained early starts recording once telemetry is configured."""
    tracer = telemetry.get_tracer("early")
    with tracer.start_as_current_span("before") as span:
        assert not span.is_recording()
    with telemetry.testing.capture() as later, tracer.start_as_current_span("after"):
        pass
    assert [s.name for s in later.spans] == ["after"]


def test_logger_before_configure_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """Before configure(), get_logger() lines go nowhere (and cost next to nothing)."""
    telemetry.get_logger("early").info("ignored", x=1)
    assert capsys.readouterr() == ("", "")


def test_logger_taken_before_configure_records_after_it(log_stream: io.StringIO) -> None:
    """A logger obtained early writes once telemetry is configured."""
    log = telemetry.get_logger("early")
    log.info("lost")
    telemetry.configure(store=False, log_stream=log_stream)
    log.info("kept")
    assert [line["event"] for line in json_lines(log_stream)] == ["kept"]


def test_second_configure_warns_and_keeps_the_first() -> None:
    """Calling configure() twice warns (TelemetryWarning) and changes nothing."""
    first = quiet(service_name="one")
    with pytest.warns(TelemetryWarning, match="already called"):
        second = quiet(service_name="two")
    assert second is first
    assert telemetry.get_config() is first


def test_reset_then_configure_applies_new_settings() -> None:
    """After reset(), configure() starts again with the new settings."""
    quiet(service_name="one")
    telemetry.reset()
    assert quiet(service_name="two").service_name == "two"


def test_reset_unsubscribes_from_resilience() -> None:
    """reset() removes the event hook: guarded calls go back to the fast path."""
    quiet()
    assert resilience.has_subscribers()
    telemetry.reset()
    assert not resilience.has_subscribers()
    assert not telemetry.is_configured()


def test_reset_restores_structlog_defaults() -> None:
    """configure() installs our processor chain in structlog; reset() restores structlog's."""
    default = structlog.get_config()["processors"]
    quiet()
    assert structlog.get_config()["processors"] != default
    telemetry.reset()
    assert structlog.get_config()["processors"] == default


def test_reset_restores_resilience_slow_call() -> None:
    """configure(slow_call=...) sets resilience's threshold; reset() puts the old one back."""
    before = resilience.get_settings().slow_call
    quiet(slow_call=0.25)
    assert resilience.get_settings().slow_call == 0.25
    telemetry.reset()
    assert resilience.get_settings().slow_call == before


def test_always_mode_reports_every_call() -> None:
    """spans='always' sets resilience's slow_call threshold to 0: every call finishes loudly."""
    quiet(spans="always")
    assert resilience.get_settings().slow_call == 0.0


def test_reset_without_configure_is_harmless() -> None:
    """reset() may be called any time."""
    telemetry.reset()
    assert telemetry.get_config() is None


def test_defaults() -> None:
    """Without arguments or environment: the default store path, JSON, all sampled, lazy."""
    config = resolve({}, {})
    assert config.store == DEFAULT_STORE == str(Path(".shockproof") / "telemetry.db")
    assert (config.log_format, config.sample_ratio, config.spans, config.exceptions_as) == (
        "json", 1.0, "lazy", "span_events")


def test_default_store_is_created_under_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() with no store argument opens ./.shockproof/telemetry.db."""
    monkeypatch.chdir(tmp_path)
    for var in ("SHOCKPROOF_STORE", "SHOCKPROOF_SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    telemetry.configure(log_stream=io.StringIO())
    assert (tmp_path / ".shockproof" / "telemetry.db").exists()


def test_store_false_means_no_store() -> None:
    """store=False turns the store off."""
    assert quiet().store is None


def test_environment_supplies_settings() -> None:
    """SHOCKPROOF_* variables configure what arguments leave out."""
    config = resolve({}, {"SHOCKPROOF_SERVICE_NAME": "shop", "SHOCKPROOF_STORE": "/tmp/x.db",
                          "SHOCKPROOF_SENTRY_DSN": "http://k@127.0.0.1:9/1",
                          "SHOCKPROOF_LOG_FORMAT": "console", "SHOCKPROOF_SAMPLE_RATIO": "0.5",
                          "SHOCKPROOF_SPANS": "always", "SHOCKPROOF_EXCEPTIONS_AS": "logs",
                          "SHOCKPROOF_SLOW_CALL": "2"})
    assert (config.service_name, config.store, config.sentry_dsn, config.log_format,
            config.sample_ratio, config.spans, config.exceptions_as, config.slow_call) == (
        "shop", "/tmp/x.db", "http://k@127.0.0.1:9/1", "console", 0.5, "always", "logs", 2.0)


def test_standard_otel_variables_apply() -> None:
    """OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_TRACES_SAMPLER_ARG are honoured."""
    config = resolve({}, {"OTEL_SERVICE_NAME": "svc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/",
                          "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                          "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert (config.service_name, config.otlp_endpoint, config.sample_ratio) == ("svc", "http://c:4318", 0.25)


def test_shockproof_variables_beat_otel_ones() -> None:
    """SHOCKPROOF_SERVICE_NAME wins over OTEL_SERVICE_NAME."""
    assert resolve({}, {"OTEL_SERVICE_NAME": "a", "SHOCKPROOF_SERVICE_NAME": "b"}).service_name == "b"


def test_arguments_beat_environment() -> None:
    """An explicit argument overrides its variable."""
    assert resolve({"service_name": "arg"}, {"SHOCKPROOF_SERVICE_NAME": "env"}).service_name == "arg"


def test_store_can_be_switched_off_from_the_environment() -> None:
    """SHOCKPROOF_STORE=off means no store."""
    assert resolve({}, {"SHOCKPROOF_STORE": "off"}).store is None


def test_traces_endpoint_path_is_normalised() -> None:
    """A signal-specific URL is reduced to the base the exporters extend."""
    assert resolve({"otlp_endpoint": "http://c:4318/v1/traces"}, {}).otlp_endpoint == "http://c:4318"


@pytest.mark.parametrize("settings", [
    {"sample_ratio": 1.5}, {"sample_ratio": -0.1}, {"log_format": "xml"}, {"spans": "sometimes"},
    {"exceptions_as": "stderr"}, {"slow_call": -1}, {"service_name": ""}, {"log_level": "loud"},
    {"otlp_endpoint": "collector:4318"}, {"sentry_dsn": "not a dsn"}, {"redact": "emails"},
    {"store": 42},
])
def test_bad_settings_raise_configuration_error(settings: dict[str, Any]) -> None:
    """Each unusable setting raises ConfigurationError (a ValueError) naming it."""
    with pytest.raises(ConfigurationError, match=next(iter(settings))):
        resolve(settings, {})


def test_bad_number_in_environment_names_the_variable() -> None:
    """A non-numeric variable is a ConfigurationError naming that variable."""
    with pytest.raises(ConfigurationError, match="SHOCKPROOF_SLOW_CALL"):
        resolve({}, {"SHOCKPROOF_SLOW_CALL": "soon"})


def test_configuration_error_is_a_value_error() -> None:
    """ConfigurationError is also a ValueError (and a TelemetryError)."""
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(ConfigurationError, telemetry.TelemetryError)


def test_failed_configure_leaves_nothing_running() -> None:
    """A ConfigurationError leaves telemetry unconfigured."""
    with pytest.raises(ConfigurationError):
        telemetry.configure(store=False, sample_ratio=2.0)
    assert not telemetry.is_configured()
    assert not resilience.has_subscribers()


def test_config_repr_hides_the_sentry_dsn() -> None:
    """The DSN (it contains a key) is not in the config's repr."""
    config = resolve({"sentry_dsn": "http://secretkey@127.0.0.1:9/1"}, {})
    assert "secretkey" not in repr(config)


def test_redaction_rules_are_part_of_the_config() -> None:
    """redact= takes RedactionRules."""
    rules = RedactionRules(keys=("ssn2",))
    assert quiet(redact=rules).redact is rules


@pytest.fixture
def unset_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenTelemetry's global tracer provider as in a fresh process (not set)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())


@pytest.mark.usefixtures("unset_global_provider")
def test_global_provider_is_set_when_nobody_did() -> None:
    """Libraries using opentelemetry.trace.get_tracer() record into our provider."""
    with telemetry.testing.capture() as cap:
        assert isinstance(trace.get_tracer_provider(), GlobalTracerProvider)
        with trace.get_tracer("lib").start_as_current_span("from-a-library"):
            pass
    assert [s.name for s in cap.spans] == ["from-a-library"]


@pytest.mark.usefixtures("unset_global_provider")
def test_an_application_provider_is_left_alone() -> None:
    """If the application set its own global provider, configure() does not replace it."""
    mine = trace.NoOpTracerProvider()
    trace.set_tracer_provider(mine)
    quiet()
    assert trace.get_tracer_provider() is mine


def test_flush_returns_true_when_everything_went_out(cap: telemetry.testing.Capture) -> None:
    """flush() reports success when every sink took its data."""
    with telemetry.get_tracer().start_as_current_span("x"):
        pass
    assert telemetry.flush(5.0) is True


def test_flush_before_configure_is_harmless() -> None:
    """flush() before configure() has nothing to do."""
    assert telemetry.flush() is True


def test_dropped_is_empty_when_nothing_was_lost(cap: telemetry.testing.Capture) -> None:
    """dropped() counts only losses."""
    assert telemetry.dropped() == {}
