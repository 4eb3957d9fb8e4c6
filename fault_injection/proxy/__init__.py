"""The chaos proxy: real network faults between an application and its upstream.

An asyncio TCP proxy with toxics in the Toxiproxy model (latency, down, reset_peer,
timeout/black hole, bandwidth, slicer, limit_data), each on one stream with a
deterministic per-connection ``toxicity``; and a small HTTP control endpoint on
loopback (bearer token) with its client. See ``_toxics`` for units and semantics.

Exception tree::

    FaultInjectionError                     the package's root (fault_injection._plan)
     └── ProxyError                         root of everything raised here
          ├── InvalidToxic (ValueError)      a toxic description is wrong: .field, .reason
          │    └── DuplicateToxic            that name is taken (field "name")
          ├── UnknownToxic (KeyError)        no toxic of that name: .name
          └── ControlError                   the control endpoint answered with an error
               │                              .status, .detail
               ├── ControlUnreachable (ConnectionError)   nobody listens there
               └── ControlAuthFailed (PermissionError)    missing or wrong token
"""

from __future__ import annotations

from ._control import (
    ControlAuthFailed,
    ControlError,
    ControlServer,
    ControlUnreachable,
    ProxyClient,
)
from ._server import ChaosProxy, format_address, parse_address
from ._toxics import (
    DuplicateToxic,
    InvalidToxic,
    ProxyError,
    Stream,
    Toxic,
    UnknownToxic,
    bandwidth,
    black_hole,
    down,
    latency,
    limit_data,
    reset_peer,
    slicer,
)

__all__ = [
    "ChaosProxy",
    "ControlAuthFailed",
    "ControlError",
    "ControlServer",
    "ControlUnreachable",
    "DuplicateToxic",
    "InvalidToxic",
    "ProxyClient",
    "ProxyError",
    "Stream",
    "Toxic",
    "UnknownToxic",
    "bandwidth",
    "black_hole",
    "down",
    "format_address",
    "latency",
    "limit_data",
    "parse_address",
    "reset_peer",
    "slicer",
]
