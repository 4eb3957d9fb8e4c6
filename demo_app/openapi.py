"""The OpenAPI 3.1 document of the demo API: every route, request body and error body.

Request schemas come from the pydantic models in :mod:`demo_app.schemas`; every
error is an RFC 9457 problem (``application/problem+json``).
"""

from __future__ import annotations

import functools
from typing import Any

from resilience import __version__

from . import media
from .schemas import ProgressBody, SignupForm

_REF = "#/components/schemas/{model}"
Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Json) -> Json:
    return {"type": "object", "required": required, "properties": props}


_STR: Json = {"type": "string"}
_NUM: Json = {"type": "number"}
_INT: Json = {"type": "integer"}
_BOOL: Json = {"type": "boolean"}

_PROBLEM = _obj(
    ["type", "title", "status", "detail", "instance", "error_id", "trace_id", "kind"],
    type={"type": "string", "description": "A URI naming the problem, or about:blank."},
    title=_STR, status=_INT,
    detail={"type": "string", "description": "Safe, human-readable explanation."},
    instance={"type": "string", "description": "The request path."},
    error_id={"type": "string", "description": "Unique per error; quote it in reports."},
    trace_id={"type": "string", "pattern": "^[0-9a-f]{32}$"},
    kind={"type": "string", "enum": ["logic", "validation", "network", "io"]},
)
_FIELD_ERROR = _obj(["field", "message", "type"], field=_STR, message=_STR, type=_STR)
_VALIDATION_PROBLEM: Json = {"allOf": [_ref("Problem"), _obj(
    ["errors"], errors={"type": "array", "items": _ref("FieldError")})]}

_ARTWORK = _obj(["background", "accent"], background=_STR, accent=_STR, aspect_ratio=_STR, alt=_STR)
_TITLE_SUMMARY = _obj(["id", "name"], id=_INT, name=_STR, year=_INT, genre=_STR,
                      duration_s=_NUM, media_type=_STR, artwork=_ref("Artwork"))
_DEGRADED: Json = {"degraded": {"type": "boolean", "description": "Served from cache: the upstream failed."},
                   "cached_at": {"type": ["number", "null"]}}
_CATALOG: Json = {"type": "object", "required": ["titles", "degraded"], "properties": {
    "titles": {"type": "array", "items": _ref("TitleSummary")}, **_DEGRADED}}
_TITLE: Json = {"type": "object", "required": ["id", "name", "degraded"], "properties": {
    **_TITLE_SUMMARY["properties"], "synopsis": _STR,
    "recommendations": {"type": "array", "items": _INT}, **_DEGRADED}}
_PROGRESS = _obj(["title_id", "position_s", "updated_at"], title_id=_INT, position_s=_NUM, updated_at=_NUM)
_ACCOUNT = _obj(["user_id", "display_name", "plan"], user_id=_STR, display_name=_STR, plan=_STR)
_UPLOAD_FORM = _obj(["file", "duration"],
                    file={"type": "string", "contentMediaType": "application/octet-stream",
                          "description": "video/mp4, video/webm, video/ogg, video/quicktime or audio/wav"},
                    duration={"type": "number", "exclusiveMinimum": 0, "maximum": 86400})
_UPLOAD = _obj(["id", "size_bytes", "duration_s", "bitrate_bps"], id=_STR, content_type=_STR,
               container=_STR, size_bytes=_INT, duration_s=_NUM, bitrate_bps=_NUM, sha256=_STR)
_READY = _obj(["status", "checks"], status=_STR, pid=_INT, checks={"type": "object"})

_RETRY_AFTER: Json = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                      "schema": {"type": "integer", "minimum": 1}}}
_DEGRADED_HEADERS: Json = {
    "Warning": {"description": 'Set to 110 - "Response is Stale" when degraded.', "schema": _STR},
    "X-Shockproof-Degraded": {"description": "1 when served from cache.", "schema": _STR},
}


def _problem(description: str, *, validation: bool = False, retry_after: bool = False) -> Json:
    out: Json = {"description": description, "content": {"application/problem+json": {
        "schema": _ref("ValidationProblem" if validation else "Problem")}}}
    if retry_after:
        out["headers"] = _RETRY_AFTER
    return out


def _json(schema: Json, description: str, headers: Json | None = None) -> Json:
    out: Json = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


_E400 = _problem("Malformed body (not JSON, not UTF-8).", validation=True)
_E401 = _problem("No X-User header and no signup cookie: who is watching?")
_E422 = _problem("Invalid fields, each listed in errors.", validation=True)
_E500 = _problem("Unexpected error; the body carries the error id and trace id.")
_E502 = _problem("The upstream service failed.")
_E503 = _problem("A dependency is unavailable (circuit open, no cached answer) or storage is.",
                 retry_after=True)
_E507 = _problem("The server ran out of storage space; the previous data is intact.")

_TITLE_ID: Json = {"name": "title_id", "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 0}}
_USER: list[Json] = [
    {"name": "X-User", "in": "header", "required": False,
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
     "description": "Who is watching (else the shockproof_user cookie set by signup)."},
    {"name": "shockproof_user", "in": "cookie", "required": False,
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}},
]


def _op(summary: str, responses: Json, **extra: Any) -> Json:
    return {"summary": summary, "responses": {**responses, "500": _E500}, **extra}


def _paths() -> Json:
    signup_body = {"required": True, "content": {
        kind: {"schema": _ref("SignupForm")}
        for kind in ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")}}
    return {
        "/": {"get": _op("The web page.", {"200": {"description": "HTML page.",
                                                   "content": {"text/html": {"schema": _STR}}}})},
        "/static/{filename}": {"get": _op("Static files of the web page (JS, CSS).", {
            "200": {"description": "The file."}, "404": _problem("No such file.")},
            parameters=[{"name": "filename", "in": "path", "required": True, "schema": _STR}])},
        "/api/catalog": {"get": _op("Every title with its artwork metadata.", {
            "200": _json(_ref("Catalog"), "The catalog (degraded: from cache).", _DEGRADED_HEADERS),
            "502": _E502, "503": _E503, "504": _problem("The upstream did not answer in time.")})},
        "/api/titles/{title_id}": {"get": _op("One title with artwork and recommendations.", {
            "200": _json(_ref("Title"), "The title (degraded: from cache).", _DEGRADED_HEADERS),
            "404": _problem("No such title."), "502": _E502, "503": _E503,
            "504": _problem("The upstream did not answer in time.")}, parameters=[_TITLE_ID])},
        "/api/signup": {"post": _op("Create an account (sets the shockproof_user cookie).", {
            "201": _json(_ref("Account"), "Created.", {"Set-Cookie": {"schema": _STR}}),
            "400": _E400, "409": _problem("The email is registered already."),
            "415": _problem("Neither JSON nor form fields."), "422": _E422, "503": _E503,
            "507": _E507}, requestBody=signup_body)},
        "/api/uploads": {"post": _op("Upload a video; it is analysed (bitrate) and stored.", {
            "201": _json(_ref("Upload"), "Stored."), "400": _E400,
            "413": _problem("The file is over the configured limit."),
            "415": _problem("Not multipart form data."), "422": _E422, "503": _E503,
            "507": _E507}, requestBody={"required": True, "content": {
                "multipart/form-data": {"schema": _ref("UploadForm"), "encoding": {"file": {
                    "contentType": ", ".join(sorted(media.ACCEPTED_TYPES))}}}}})},
        "/api/progress/{title_id}": {
            "put": _op("Save the watch position (atomic write).", {
                "200": _json(_ref("Progress"), "Saved."), "400": _E400, "401": _E401,
                "404": _problem("No such route (title_id is not a non-negative integer)."),
                "415": _problem("Not JSON."),
                "422": _E422, "503": _E503, "507": _E507},
                parameters=[_TITLE_ID, *_USER],
                requestBody={"required": True, "content": {
                    "application/json": {"schema": _ref("ProgressBody")}}}),
            "get": _op("The saved watch position.", {
                "200": _json(_ref("Progress"), "The position."),
                "401": _E401, "404": _problem("Nothing saved yet."), "422": _E422, "503": _E503},
                parameters=[_TITLE_ID, *_USER]),
        },
        "/api/stream/{title_id}": {"get": _op("The title's media, with Range support.", {
            "200": {"description": "The whole file.", "headers": {"Accept-Ranges": {"schema": _STR}},
                    "content": {"audio/wav": {"schema": {"type": "string",
                                                         "contentMediaType": "audio/wav"}}}},
            "206": {"description": "The requested range.",
                    "headers": {"Content-Range": {"schema": _STR}},
                    "content": {"audio/wav": {"schema": {"type": "string",
                                                         "contentMediaType": "audio/wav"}}}},
            "404": _problem("No media for this title."),
            "416": _problem("Malformed or unsatisfiable range."), "503": _E503},
            parameters=[_TITLE_ID, {"name": "Range", "in": "header", "required": False,
                                    "schema": _STR, "example": "bytes=0-1023"}])},
        "/healthz": {"get": _op("The process is up.", {
            "200": _json(_obj(["status"], status=_STR), "Up.")})},
        "/readyz": {"get": _op("Ready: storage writable and no circuit open.", {
            "200": _json(_ref("Ready"), "Ready."),
            "503": _problem("Not ready (the body lists the checks).", retry_after=True)})},
        "/openapi.json": {"get": _op("This document.", {
            "200": _json({"type": "object"}, "OpenAPI 3.1.")})},
    }


def _schemas() -> Json:
    models = {m.__name__: m.model_json_schema(ref_template=_REF, mode="validation")
              for m in (SignupForm, ProgressBody)}
    return {
        "Problem": _PROBLEM, "FieldError": _FIELD_ERROR, "ValidationProblem": _VALIDATION_PROBLEM,
        "Artwork": _ARTWORK, "TitleSummary": _TITLE_SUMMARY, "Catalog": _CATALOG, "Title": _TITLE,
        "Progress": _PROGRESS, "Account": _ACCOUNT, "UploadForm": _UPLOAD_FORM, "Upload": _UPLOAD,
        "Ready": _READY, **models,
    }


@functools.cache
def openapi_document() -> Json:
    """The whole document (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Shockproof demo streaming service", "version": __version__,
                 "description": "Every error is an RFC 9457 problem (application/problem+json)."},
        "servers": [{"url": "/"}],
        "paths": _paths(),
        "components": {"schemas": _schemas()},
    }
