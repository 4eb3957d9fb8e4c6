"""The demo app as the soak serves it: ``demo_app.serve`` with one more read-only route.

``python -m bench._soak_app --port 0 --data-dir D --upstream-url U ...`` (the same
options as ``python -m demo_app.serve``, waitress only) builds the very app the demo
runs, telemetry on, and adds ``GET /_soak/telemetry``: it flushes telemetry and answers
``telemetry.dropped()`` (what was lost, by source), which lives only inside the
app's process. Loopback only, like the app; it exposes counters, nothing else.
"""

from __future__ import annotations

from flask import Response, jsonify

import telemetry
from demo_app import serve
from demo_app.app import configure_telemetry, create_app

ROUTE = "/_soak/telemetry"


def _telemetry() -> Response:
    flushed = telemetry.flush(10.0)
    return jsonify(flushed=flushed, dropped=telemetry.dropped())


def main(argv: list[str] | None = None) -> None:
    args = serve.parser().parse_args(argv)
    config = serve.config_from(args)
    configure_telemetry(config)
    app = create_app(config)
    app.add_url_rule(ROUTE, "soak_telemetry", _telemetry)
    serve.run_waitress(app, args.port, "app")


if __name__ == "__main__":
    main()
