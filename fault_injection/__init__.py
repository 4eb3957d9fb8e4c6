"""Shockproof's fault injection: provoke the four kinds of runtime error on purpose.

Off unless enabled (``SHOCKPROOF_FAULTS=1``, :func:`enable` or :func:`install`)::

    from fault_injection import FaultPlan, Rule, install, halt, network, io, point

    install(FaultPlan(seed=42, rules=[
        Rule("catalog.*", network("reset"), rate=0.3),      # every guard name is a site
        Rule("storage.write", io("ENOSPC"), first=2),       # and so is point("storage.write")
    ]))
    ...
    halt()                                                  # everything off, now

Decisions are a pure function of (seed, rule id, site, the call's ordinal at that
site), so a plan replays exactly (``FaultPlan.decisions`` and ``shockproof-faults
replay``). Every injected fault emits :class:`resilience.FaultInjected` and its
exception carries ``__shockproof_injected__ = True`` and the rule id
(:func:`is_injected`, :func:`injected_rule`).

Other modules: :mod:`fault_injection.control` (the HTTP control API blueprint and
:class:`~fault_injection.control.ControlClient`), :mod:`fault_injection.strategies`
(Hypothesis), :mod:`fault_injection.pytest_plugin` (the ``faults`` fixture).

Exceptions::

    Exception
     ├── FaultInjectionError                 root of this package's own errors
     │    ├── PlanError (ValueError)          a plan/rule/fault is invalid: .errors [{field, message}]
     │    ├── FaultsDisabled                  rules added while fault injection is off
     │    ├── RuleConflict (ValueError)       a rule with that id is already active
     │    └── control.ControlError            talking to a running app failed
     │         ├── control.AppUnreachable     nothing answered (CLI exit code 3)
     │         ├── control.AuthFailed         401 bad token / 403 not loopback (exit code 4)
     │         └── control.ApiError           any other problem answer: .status .problem .errors
     └── HTTPStatusFault                      injected by http_status(): .status, .retry_after
          ├── TransientHTTPStatusFault        408/425/429/5xx, also a ConnectionError (network)
          └── RejectedHTTPStatusFault         other 4xx, also a ValidationFailed (validation)
"""

from __future__ import annotations

from ._context import (
    BAGGAGE_KEY,
    FAULT_HEADER,
    FaultContext,
    extract,
    flagged,
    outgoing_headers,
    sign,
)
from ._context import current as fault_context
from ._io import (
    PlanFile,
    dumps_plan,
    load_plan,
    load_plan_file,
    loads_plan_file,
    parse_plan,
    parse_rule,
    plan_schema,
    save_plan,
)
from ._plan import (
    FAULT_KINDS,
    IO_ERRNOS,
    NETWORK_VARIANTS,
    Decision,
    Fault,
    FaultInjectionError,
    FaultPlan,
    HTTPStatusFault,
    PlanError,
    RejectedHTTPStatusFault,
    Rule,
    TransientHTTPStatusFault,
    http_status,
    injected_rule,
    io,
    is_injected,
    latency,
    logic,
    network,
    validation,
)
from ._sites import (
    FaultsDisabled,
    Injection,
    RuleConflict,
    RuleStats,
    Status,
    active_plan,
    add_rule,
    add_rules,
    apoint,
    disable,
    enable,
    halt,
    install,
    installed,
    is_enabled,
    point,
    recent,
    remove_rule,
    site,
    stats,
    status,
)

# Plain sorted() order, which tests/test_exports.py checks (not ruff's isort-style order).
__all__ = [  # noqa: RUF022
    "BAGGAGE_KEY",
    "Decision",
    "FAULT_HEADER",
    "FAULT_KINDS",
    "Fault",
    "FaultContext",
    "FaultInjectionError",
    "FaultPlan",
    "FaultsDisabled",
    "HTTPStatusFault",
    "IO_ERRNOS",
    "Injection",
    "NETWORK_VARIANTS",
    "PlanError",
    "PlanFile",
    "RejectedHTTPStatusFault",
    "Rule",
    "RuleConflict",
    "RuleStats",
    "Status",
    "TransientHTTPStatusFault",
    "active_plan",
    "add_rule",
    "add_rules",
    "apoint",
    "disable",
    "dumps_plan",
    "enable",
    "extract",
    "fault_context",
    "flagged",
    "halt",
    "http_status",
    "injected_rule",
    "install",
    "installed",
    "io",
    "is_enabled",
    "is_injected",
    "latency",
    "load_plan",
    "load_plan_file",
    "loads_plan_file",
    "logic",
    "network",
    "outgoing_headers",
    "parse_plan",
    "parse_rule",
    "plan_schema",
    "point",
    "recent",
    "remove_rule",
    "save_plan",
    "sign",
    "site",
    "stats",
    "status",
    "validation",
]
