"""OTLP/HTTP ingest: ``POST /v1/traces`` and ``POST /v1/logs``, protobuf or JSON.

Other processes (and other languages' OpenTelemetry SDKs) point their OTLP/HTTP
exporter at the viewer; what they send is decoded (:mod:`._otlp`), redacted,
and written through the same :class:`~telemetry.TraceStore` the application
writes, before the answer goes back (so a 200 means "stored"). Bodies are
limited in size (``MAX_CONTENT_LENGTH``, and the same limit after gzip);
anything that cannot be decoded answers 400 problem+json, an unknown content
type 415, never a 500.
"""

from __future__ import annotations

import zlib
from typing import Final

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ._app import refuse, viewer
from ._otlp import OtlpError, decode, logs_of, response, spans_of

blueprint = Blueprint("ingest", __name__)

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
FLUSH_TIMEOUT_S: Final = 5.0


@blueprint.post("/v1/traces")
def ingest_traces() -> Response:
    return _ingest("traces")


@blueprint.post("/v1/logs")
def ingest_logs() -> Response:
    return _ingest("logs")


def _ingest(signal: str) -> Response:
    mimetype = request.mimetype
    if mimetype not in (PROTOBUF, JSON):
        return refuse(415, "Unsupported Media Type",
                      f"send OTLP as {PROTOBUF} or {JSON}, not {mimetype or 'no content type'}")
    json_body = mimetype == JSON
    v = viewer()
    try:
        message = decode(signal, _body(), json_body=json_body)
        if signal == "traces":
            spans = spans_of(message, v.redactor)
            stored = len(spans)
            if spans:
                v.writer().add_spans(spans)
        else:
            logs = logs_of(message, v.redactor, v.now())
            stored = len(logs)
            if logs:
                v.writer().add_logs(logs)
    except OtlpError as exc:
        return refuse(400, "Bad Request", str(exc))
    if stored:
        v.writer().flush(FLUSH_TIMEOUT_S)
    data, content_type = response(signal, json_body=json_body)
    return Response(data, status=200, content_type=content_type)


def _body() -> bytes:
    """The request body, gunzipped when it says so, never larger than the configured limit."""
    limit = int(current_app.config.get("MAX_CONTENT_LENGTH") or 0)
    raw = request.get_data(cache=False)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise OtlpError(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1) if limit else inflater.decompress(raw)
    except zlib.error as exc:
        raise OtlpError(f"the gzip body cannot be decompressed: {exc}") from None
    if limit and (len(data) > limit or inflater.unconsumed_tail):
        raise RequestEntityTooLarge(f"the decompressed body exceeds {limit} bytes")
    return data
