"""The HTTP API's contract: its OpenAPI 3.1 document, as data (served at ``/openapi.json``).

Kept by hand beside the handlers (:mod:`.app`); a unit test validates it against the
specification, and the integration tests run Schemathesis against it: every response a handler
gives must be one this document declares, with its schema.
"""

from __future__ import annotations

from typing import Any

from pallycon.models import JobRegisterRequest
from pallycon_pack.present.records import STATES
from pallycon_pack.web.http_api.limits import DEFAULT_PAGE, MAX_BATCH, MAX_PAGE
from pallycon_pack.web.http_api.problems import MEDIA_TYPE, TYPE_PREFIX, TYPES
from pallycon_store.admission import MAX_METADATA_BYTES, REQUEST_ID_RE
from pallycon_store.flow import Priority

VERSION = "1.0.0"
JSON = "application/json"
NDJSON = "application/x-ndjson"

_REF = "#/components/schemas/"
#: A submission, as an example (examples/http-request.json's).
EXAMPLE: dict[str, Any] = {
    "body": {
        "job_name": "big-buck-bunny",
        "storage": {
            "input": {"storage_id": "ST000001", "contents_path": ["videos/big-buck-bunny.mp4"]},
            "output": {"storage_id": "ST000001", "path": "packaged"},
        },
        "content_id": "big-buck-bunny",
        "streaming_format": ["dash", "hls"],
        "protect_type": ["watermark", "drm"],
    },
    "request_id": "movie-1",
    "metadata": {"cms_asset": 100},
    "priority": "high",
}


def _job_schemas() -> dict[str, Any]:
    """The job registration's JSON Schema (the model producers submit, :class:`JobRegisterRequest`)
    as components: ``JobRegistration`` and the objects it holds. The model's own validators
    check more than a schema says (a path's form, sizes, a field's other spelling); its
    errors name the field all the same."""
    schema = JobRegisterRequest.model_json_schema(ref_template=_REF + "{model}")
    found: dict[str, Any] = schema.pop("$defs", {})
    return {**found, "JobRegistration": schema}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _problem(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": _ref("Problem")}},
    }
    if retry_after:
        answer["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return answer


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref(schema)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


#: What every /v1 operation may answer besides its own: the token, the limits, Redis.
_COMMON = {
    "401": _problem("No token, or a token that is not one (WWW-Authenticate: Bearer)."),
    "429": _problem(
        "Too many requests for this token: wait Retry-After seconds.", retry_after=True
    ),
    "500": _problem("An error of the server (logged; never a traceback here)."),
    "503": _problem(
        "Redis is unavailable, or did not confirm a write, or the server has too many "
        "connections: try again (Retry-After).",
        retry_after=True,
    ),
}
#: A body that did not arrive in time (the connection is then closed).
_SLOW_BODY = _problem("The body did not arrive within PALLYCON_HTTP_BODY_TIMEOUT seconds.")
_READ = {
    **_COMMON,
    "400": _problem("A query parameter that cannot be read."),
    "422": _problem("A query parameter that cannot be used (errors name it)."),
}
_WRITE = {
    **_COMMON,
    "400": _problem("A body that is not JSON (or not JSON Lines)."),
    "403": _problem("A read-only token, or a site this token may not submit for (errors name it)."),
    "408": _SLOW_BODY,
    "413": _problem("A body larger than PALLYCON_HTTP_MAX_BODY_BYTES, or too many items."),
    "415": _problem("A Content-Type this operation does not take."),
    "422": _problem(
        "An invalid request (errors name every field at fault), or a request id this token "
        "cannot use (another site's request has it)."
    ),
}

_REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "description": "The request's id.",
    "schema": {"type": "string"},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pallycon-pack HTTP API",
        "version": VERSION,
        "description": (
            "Submit packaging requests to pallycon-pack and follow them, over HTTP: the same "
            "validation, records and events as the Python Producer and `pallycon-pack submit`. "
            "Every /v1 operation needs `Authorization: Bearer <token>` (`pallycon-pack tokens "
            "add`); errors are RFC 9457 problem details. See docs/HTTP.md."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/requests": {
            "post": {
                "operationId": "submitRequest",
                "summary": "Submit one packaging request.",
                "description": (
                    "Validated, then recorded. The Idempotency-Key header is the request id: "
                    "the same request sent again under the same key is the same request (200, "
                    "its record); a different body under it is 409. Without a key or a "
                    "request_id the request gets a new id each time it is sent."
                ),
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": (
                            "The request id (as request_id; both: the same), bare or as a "
                            'structured-field string ("movie-1", as the IETF draft has it).'
                        ),
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("Submission"),
                            "examples": {"movie": {"value": EXAMPLE}},
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        "Recorded.",
                        "Submitted",
                        {"Location": {"$ref": "#/components/headers/Location"}},
                    ),
                    "200": _json(
                        "Submitted before with the same body: nothing new recorded.",
                        "Submitted",
                        {"Location": {"$ref": "#/components/headers/Location"}},
                    ),
                    "409": _problem("The request id is used by a request with another body."),
                    **_WRITE,
                },
            },
            "get": {
                "operationId": "listRequests",
                "summary": "List requests, newest first by when each entered its state, a page "
                "at a time.",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(STATES)},
                    },
                    {
                        "name": "site",
                        "in": "query",
                        "description": "A site id (the default site by its id).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "Entered their state at or after: ISO 8601, or a "
                        "duration back from now (90s, 30m, 2h, 7d).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "The previous page's next.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE,
                            "default": DEFAULT_PAGE,
                        },
                    },
                ],
                "responses": {
                    "200": _json(
                        "A page; next is null on the last.",
                        "Page",
                        {"Link": {"$ref": "#/components/headers/Link"}},
                    ),
                    "403": _problem("A site this token may not read (errors name it)."),
                    **_READ,
                },
            },
        },
        "/v1/requests/batch": {
            "post": {
                "operationId": "submitBatch",
                "summary": f"Submit up to {MAX_BATCH} requests at once, all or nothing.",
                "description": (
                    "A JSON array of submissions, or JSON Lines (one per line, blank lines "
                    "skipped). Every item is checked first: if one is bad nothing is recorded "
                    "and the problem's errors name each bad item's line (1-based: the line in "
                    "JSON Lines, the position in an array) and field. A submission without a "
                    "priority is bulk."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "array",
                                "items": _ref("Submission"),
                                "maxItems": MAX_BATCH,
                            },
                            "examples": {
                                "two": {"value": [EXAMPLE, {**EXAMPLE, "request_id": "movie-2"}]}
                            },
                        },
                        NDJSON: {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": _json("Every item recorded (or submitted before).", "BatchResult"),
                    "409": _problem("A request id is used by a request with another body."),
                    **_WRITE,
                },
            },
        },
        "/v1/requests/{request_id}": {
            "get": {
                "operationId": "getRequest",
                "summary": "A request's record and its events (as `requests show --json`).",
                "parameters": [_REQUEST_ID],
                "responses": {
                    "200": _json("The record and its events, oldest first.", "RequestView"),
                    "404": _problem("No such request (or not one this token may see)."),
                    **_COMMON,
                },
            },
        },
        "/v1/requests/{request_id}/retry": {
            "post": {
                "operationId": "retryRequest",
                "summary": "Re-drive a failed request under the same id (as `retry`).",
                "parameters": [_REQUEST_ID],
                "responses": {
                    "200": _json("Retried: how.", "RetryResult"),
                    "403": _problem("A read-only token."),
                    "404": _problem("No such request (or not one this token may see)."),
                    "409": _problem("Not failed (or changed meanwhile): nothing done."),
                    **_COMMON,
                },
            },
        },
        "/v1/requests/{request_id}/cancel": {
            "post": {
                "operationId": "cancelRequest",
                "summary": "Cancel a request that has not finished (as `cancel`).",
                "parameters": [_REQUEST_ID],
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref("CancelBody")}},
                },
                "responses": {
                    "200": _json(
                        "Cancelled, tracking stopped, or finished already.", "CancelResult"
                    ),
                    "400": _problem("A body that is not JSON."),
                    "403": _problem("A read-only token."),
                    "404": _problem("No such request (or not one this token may see)."),
                    "408": _SLOW_BODY,
                    "409": _problem("It kept changing: try again."),
                    "413": _problem("A body larger than PALLYCON_HTTP_MAX_BODY_BYTES."),
                    "415": _problem("A body that is not application/json."),
                    "422": _problem('A body that is not {"reason": "..."}.'),
                    **_COMMON,
                },
            },
        },
        "/health/live": {
            "get": {
                "operationId": "live",
                "summary": "The process is up.",
                "security": [],
                "responses": {"200": _json("Up.", "Health")},
            },
        },
        "/health/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Redis answers: requests can be taken.",
                "security": [],
                "responses": {
                    "200": _json("Ready.", "Health"),
                    "503": _problem("Redis does not answer."),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `pallycon-pack tokens add NAME`.",
            }
        },
        "headers": {
            "RetryAfter": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            },
            "Location": {
                "description": "The request's URL (/v1/requests/{request_id}).",
                "schema": {"type": "string"},
            },
            "Link": {
                "description": 'The next page, as <URL>; rel="next" (absent on the last).',
                "schema": {"type": "string"},
            },
        },
        "schemas": {
            **_job_schemas(),
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail", "errors"],
                "properties": {
                    "type": {
                        "type": "string",
                        "enum": [TYPE_PREFIX + kind for kind in TYPES],
                    },
                    "title": {"type": "string"},
                    "status": {"type": "integer", "enum": sorted(set(TYPES.values()))},
                    "detail": {"type": "string"},
                    "errors": {"type": "array", "items": _ref("FieldProblem")},
                },
            },
            "FieldProblem": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {
                        "type": ["string", "null"],
                        "description": "Dotted (body.storage.input.storage_id); null: the "
                        "item or the body as a whole.",
                    },
                    "message": {"type": "string"},
                    "line": {"type": "integer", "minimum": 1, "description": "In a batch."},
                },
            },
            "Submission": {
                "type": "object",
                "required": ["body"],
                "additionalProperties": False,
                "properties": {
                    "body": {
                        "$ref": _REF + "JobRegistration",
                        "description": "The job registration, as PallyCon's Packaging API "
                        "guide has it (examples/job.json); validated by its rules.",
                    },
                    "request_id": {
                        "type": "string",
                        "pattern": REQUEST_ID_RE.pattern,
                        "description": "Your id for the request (default: a new one). The "
                        "Idempotency-Key header gives it too.",
                    },
                    "metadata": {
                        "type": ["object", "null"],
                        "description": f"Your own JSON object (at most {MAX_METADATA_BYTES} "
                        "bytes compact), kept with the request and in all its events.",
                    },
                    "site_id": {
                        "type": ["string", "null"],
                        "description": "The PallyCon site (default: the workers' default site).",
                    },
                    "priority": {
                        "type": ["string", "null"],
                        "enum": [*(p.value for p in Priority), "", None],
                        "description": "Default: normal (bulk in a batch).",
                    },
                },
            },
            "Record": {
                "type": "object",
                "description": "A request's record as `requests show --json` prints it: the "
                "fields that are set, times in ISO 8601 (UTC).",
                "required": ["request_id", "state"],
                "properties": {
                    "request_id": {"type": "string"},
                    "state": {"type": "string", "enum": list(STATES)},
                },
                "additionalProperties": True,
            },
            "Event": {
                "type": "object",
                "description": "A result event (docs/RESULTS.md).",
                "required": ["type", "request_id"],
                "additionalProperties": True,
            },
            "Submitted": {
                "type": "object",
                "required": ["record"],
                "properties": {"record": _ref("Record")},
            },
            "RequestView": {
                "type": "object",
                "required": ["record", "events"],
                "properties": {
                    "record": _ref("Record"),
                    "events": {"type": "array", "items": _ref("Event")},
                },
            },
            "Page": {
                "type": "object",
                "required": ["requests", "next"],
                "properties": {
                    "requests": {"type": "array", "items": _ref("Record")},
                    "next": {
                        "type": ["string", "null"],
                        "description": (
                            "The cursor of the next page; null on the last (a page may be "
                            "shorter than limit, even empty, and not be the last)."
                        ),
                    },
                },
            },
            "BatchResult": {
                "type": "object",
                "required": ["results", "created", "existing"],
                "properties": {
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["line", "request_id", "created"],
                            "properties": {
                                "line": {"type": "integer", "minimum": 1},
                                "request_id": {"type": "string"},
                                "created": {"type": "boolean"},
                            },
                        },
                    },
                    "created": {"type": "integer", "minimum": 0},
                    "existing": {"type": "integer", "minimum": 0},
                },
            },
            "RetryResult": {
                "type": "object",
                "required": ["request_id", "action", "reason"],
                "properties": {
                    "request_id": {"type": "string"},
                    "action": {"type": "string", "enum": ["resume", "resubmit", "reconcile"]},
                    "reason": {"type": "string"},
                },
            },
            "CancelBody": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"reason": {"type": "string", "maxLength": 500}},
            },
            "CancelResult": {
                "type": "object",
                "required": ["request_id", "outcome", "message"],
                "properties": {
                    "request_id": {"type": "string"},
                    "outcome": {
                        "type": "string",
                        "enum": ["cancelled", "stopped_tracking", "finished"],
                    },
                    "message": {"type": "string"},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"type": "string", "enum": ["ok"]}},
            },
        },
    },
}
