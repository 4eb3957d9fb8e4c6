"""Toxics: what the chaos proxy does to one direction of a connection.

The Toxiproxy model: a toxic has a ``type``, a unique ``name``, a ``stream``
(``downstream`` = upstream server -> client, ``upstream`` = client -> upstream
server), a ``toxicity`` (the probability that it applies to a given connection,
decided deterministically from the proxy's seed, the toxic's name and the
connection's ordinal) and type-specific ``attributes``.

Units differ from Toxiproxy on purpose: times are **seconds** and sizes are
**bytes** everywhere in Shockproof.

=============  ==========================================  =================================
type           attributes (defaults)                       effect on the stream
=============  ==========================================  =================================
latency        latency (required), jitter=0                each chunk is delayed
down           mode="refuse" | "close"                     refuse: the listener closes (new
                                                           connections are refused, open ones
                                                           dropped); close: connections are
                                                           accepted then closed at once
reset_peer     timeout=0                                   at the first data in the stream
                                                           (after ``timeout``) the receiving
                                                           peer gets a TCP RST
timeout        timeout=0                                   black hole: data is swallowed; the
                                                           connection closes after ``timeout``
                                                           (0 = never)
bandwidth      rate (required, bytes/s)                    the stream is paced to ``rate``
slicer         average_size=64, size_variation=0, delay=0  chunks are cut into small pieces
                                                           with ``delay`` between them
limit_data     bytes (required)                            the connection closes once
                                                           ``bytes`` went through the stream
=============  ==========================================  =================================
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from fault_injection._plan import FaultInjectionError

Stream = Literal["upstream", "downstream"]
AttrValue = float | str

STREAMS: Final = ("downstream", "upstream")
DOWN_MODES: Final = ("close", "refuse")
_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ProxyError(FaultInjectionError):
    """Root of every exception the chaos proxy raises."""


class InvalidToxic(ProxyError, ValueError):
    """A toxic description is wrong: ``field`` says which part, the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DuplicateToxic(InvalidToxic):
    """A toxic of that name is already installed (``field`` is ``name``)."""


class UnknownToxic(ProxyError, KeyError):
    """No toxic of that name is installed on the proxy."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no toxic named {self.name!r}"


@dataclass(frozen=True, slots=True)
class _Attr:
    """One attribute of a toxic type: its default (None = required) and lower bound."""

    default: AttrValue | None
    minimum: float = 0.0
    choices: tuple[str, ...] = ()


SCHEMAS: Final[Mapping[str, Mapping[str, _Attr]]] = {
    "bandwidth": {"rate": _Attr(None, minimum=1.0)},
    "down": {"mode": _Attr("refuse", choices=DOWN_MODES)},
    "latency": {"latency": _Attr(None), "jitter": _Attr(0.0)},
    "limit_data": {"bytes": _Attr(None)},
    "reset_peer": {"timeout": _Attr(0.0)},
    "slicer": {
        "average_size": _Attr(64.0, minimum=1.0),
        "size_variation": _Attr(0.0),
        "delay": _Attr(0.0),
    },
    "timeout": {"timeout": _Attr(0.0)},
}
TOXIC_TYPES: Final = tuple(sorted(SCHEMAS))


@dataclass(frozen=True, slots=True)
class Toxic:
    """One toxic, validated on construction (raises :class:`InvalidToxic`)."""

    type: str
    name: str = ""
    stream: Stream = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in SCHEMAS:
            raise InvalidToxic("type", f"unknown toxic type {self.type!r} (one of {', '.join(TOXIC_TYPES)})")
        if self.stream not in STREAMS:
            raise InvalidToxic("stream", f"must be 'downstream' or 'upstream', not {self.stream!r}")
        _check_toxicity(self.toxicity)
        object.__setattr__(self, "attributes", _check_attributes(self.type, self.attributes))
        name = self.name or f"{self.type}_{self.stream}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidToxic("name", f"use 1-64 letters, digits, '_', '-' or '.', not {name!r}")
        object.__setattr__(self, "name", name)
        if self.type == "down" and self.attributes["mode"] == "refuse" and self.toxicity < 1.0:
            raise InvalidToxic(
                "toxicity", "down with mode=refuse acts on the listener, not on single connections; it must be 1"
            )

    def attr(self, key: str) -> float:
        """A numeric attribute."""
        return float(self.attributes[key])

    def applies_to(self, seed: int, connection: int) -> bool:
        """Whether this toxic affects connection number ``connection`` (deterministic)."""
        if self.toxicity >= 1.0:
            return True
        return self.toxicity > 0.0 and unit_hash(seed, self.name, connection) < self.toxicity

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the control API's and the CLI's)."""
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: object) -> Toxic:
        """Parse the JSON form strictly: unknown keys and wrong types are errors."""
        if not isinstance(data, Mapping):
            raise InvalidToxic("toxic", "must be a JSON object")
        unknown = sorted(set(data) - {"name", "type", "stream", "toxicity", "attributes"})
        if unknown:
            raise InvalidToxic(unknown[0], "unknown field (known: name, type, stream, toxicity, attributes)")
        if "type" not in data:
            raise InvalidToxic("type", f"required (one of {', '.join(TOXIC_TYPES)})")
        name, kind, stream = data.get("name", ""), data["type"], data.get("stream", "downstream")
        for key, value in (("name", name), ("type", kind), ("stream", stream)):
            if not isinstance(value, str):
                raise InvalidToxic(key, "must be a string")
        attributes = data.get("attributes", {})
        if not isinstance(attributes, Mapping):
            raise InvalidToxic("attributes", "must be an object of name -> value")
        toxicity = data.get("toxicity", 1.0)
        return cls(kind, name, cast(Stream, stream), cast(float, toxicity), dict(attributes))


def _check_toxicity(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToxic("toxicity", "must be a number between 0 and 1")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidToxic("toxicity", f"must be between 0 and 1, not {value}")


def _check_attributes(kind: str, given: Mapping[str, object]) -> dict[str, AttrValue]:
    schema = SCHEMAS[kind]
    unknown = sorted(set(given) - set(schema))
    if unknown:
        known = ", ".join(schema)
        raise InvalidToxic(f"attributes.{unknown[0]}", f"not an attribute of {kind} (known: {known})")
    result = {key: _check_attr(kind, key, spec, given.get(key)) for key, spec in schema.items()}
    if kind == "slicer" and float(result["size_variation"]) >= float(result["average_size"]):
        raise InvalidToxic("attributes.size_variation", "must be smaller than average_size")
    return result


def _check_attr(kind: str, key: str, spec: _Attr, value: object) -> AttrValue:
    where = f"attributes.{key}"
    if value is None:
        if spec.default is None:
            raise InvalidToxic(where, f"required for {kind}")
        return spec.default
    if spec.choices:
        if value not in spec.choices:
            raise InvalidToxic(where, f"must be one of {', '.join(spec.choices)}, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToxic(where, f"must be a number, not {value!r}")
    if value < spec.minimum:
        raise InvalidToxic(where, f"must be >= {spec.minimum:g}, not {value}")
    return float(value)


def unit_hash(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on ``seed`` and ``parts``."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _make(kind: str, stream: Stream, toxicity: float, name: str, **attributes: AttrValue) -> Toxic:
    return Toxic(kind, name, stream, toxicity, attributes)


def latency(
    seconds: float, jitter: float = 0.0, *, stream: Stream = "downstream", toxicity: float = 1.0, name: str = ""
) -> Toxic:
    """Delay every chunk by ``seconds`` ± ``jitter``."""
    return _make("latency", stream, toxicity, name, latency=seconds, jitter=jitter)


def down(mode: str = "refuse", *, stream: Stream = "downstream", toxicity: float = 1.0, name: str = "") -> Toxic:
    """Refuse connections (``refuse``) or accept and close them at once (``close``)."""
    return _make("down", stream, toxicity, name, mode=mode)


def reset_peer(
    timeout: float = 0.0, *, stream: Stream = "downstream", toxicity: float = 1.0, name: str = ""
) -> Toxic:
    """Send a TCP RST to the receiving peer at the first data in the stream (after ``timeout``)."""
    return _make("reset_peer", stream, toxicity, name, timeout=timeout)


def black_hole(
    timeout: float = 0.0, *, stream: Stream = "downstream", toxicity: float = 1.0, name: str = ""
) -> Toxic:
    """Swallow the stream's data; close the connection after ``timeout`` (0 = never)."""
    return _make("timeout", stream, toxicity, name, timeout=timeout)


def bandwidth(rate: float, *, stream: Stream = "downstream", toxicity: float = 1.0, name: str = "") -> Toxic:
    """Pace the stream to ``rate`` bytes per second."""
    return _make("bandwidth", stream, toxicity, name, rate=rate)


def slicer(
    average_size: int = 64,
    size_variation: int = 0,
    delay: float = 0.0,
    *,
    stream: Stream = "downstream",
    toxicity: float = 1.0,
    name: str = "",
) -> Toxic:
    """Cut the stream into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay`` apart."""
    return _make(
        "slicer", stream, toxicity, name, average_size=average_size, size_variation=size_variation, delay=delay
    )


def limit_data(nbytes: int, *, stream: Stream = "downstream", toxicity: float = 1.0, name: str = "") -> Toxic:
    """Close the connection once ``nbytes`` went through the stream."""
    return _make("limit_data", stream, toxicity, name, bytes=nbytes)
