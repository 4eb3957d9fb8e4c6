"""The demo app's configuration: one frozen dataclass, built from arguments or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path(".shockproof")
DEFAULT_UPSTREAM_URL = "http://127.0.0.1:8002"


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Everything ``create_app`` needs; immutable once the app is built."""

    #: Users, watch progress, uploads, seeded media, the catalog cache and telemetry live here.
    data_dir: Path = DEFAULT_DATA_DIR
    #: Where the catalog service answers (point it at the chaos proxy to put faults in between).
    upstream_url: str = DEFAULT_UPSTREAM_URL
    #: Share circuit state between worker processes through Redis when set.
    redis_url: str | None = None
    #: Largest accepted upload (413 above it).
    max_upload_bytes: int = 64 * 1024 * 1024
    #: Per-request socket timeout towards the upstream, and the whole call's budget.
    upstream_timeout: float = 2.0
    catalog_deadline: float = 5.0
    #: Attempts per upstream call (the first included) and the backoff base between them.
    upstream_attempts: int = 3
    backoff_base: float = 0.05
    #: The catalog circuit: opens after this many failures in a row, for this long.
    circuit_name: str = "catalog"
    circuit_failures: int = 5
    circuit_open_for: float = 30.0
    #: Retry-After (seconds) when the catalog is down and nothing is cached.
    unavailable_retry_after: float = 5.0
    #: Seeded titles 1..N (media files are generated on first start).
    titles: int = 3
    cookie_secure: bool = False
    service_name: str = "shockproof-demo"
    #: Record requests and guarded calls with telemetry (``telemetry.flask``) when it exists.
    telemetry: bool = True
    #: Mount fault injection's control API at /_shockproof/faults (when that package has it).
    fault_control: bool = True

    @property
    def upstream(self) -> str:
        return self.upstream_url.rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DemoConfig:
        """Read ``SHOCKPROOF_*`` variables (used by gunicorn workers)."""
        env = os.environ if env is None else env
        base = cls()
        return cls(
            data_dir=Path(env.get("SHOCKPROOF_DATA_DIR", str(base.data_dir))),
            upstream_url=env.get("SHOCKPROOF_UPSTREAM_URL", base.upstream_url),
            redis_url=env.get("SHOCKPROOF_REDIS_URL") or None,
            max_upload_bytes=int(env.get("SHOCKPROOF_MAX_UPLOAD_BYTES", base.max_upload_bytes)),
            upstream_attempts=int(env.get("SHOCKPROOF_UPSTREAM_ATTEMPTS", base.upstream_attempts)),
            circuit_failures=int(env.get("SHOCKPROOF_CIRCUIT_FAILURES", base.circuit_failures)),
            circuit_open_for=float(env.get("SHOCKPROOF_CIRCUIT_OPEN_FOR", base.circuit_open_for)),
            titles=int(env.get("SHOCKPROOF_TITLES", base.titles)),
        )

    def to_env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads, for a child process."""
        env = {
            "SHOCKPROOF_DATA_DIR": str(self.data_dir),
            "SHOCKPROOF_UPSTREAM_URL": self.upstream_url,
            "SHOCKPROOF_MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "SHOCKPROOF_UPSTREAM_ATTEMPTS": str(self.upstream_attempts),
            "SHOCKPROOF_CIRCUIT_FAILURES": str(self.circuit_failures),
            "SHOCKPROOF_CIRCUIT_OPEN_FOR": str(self.circuit_open_for),
            "SHOCKPROOF_TITLES": str(self.titles),
        }
        if self.redis_url:
            env["SHOCKPROOF_REDIS_URL"] = self.redis_url
        return env
