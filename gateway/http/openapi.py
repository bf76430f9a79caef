"""The OpenAPI 3.1 document of the HTTP API, and the `/docs` page rendered from it.

Owns `openapi_document()` (built from the pydantic models in `gateway.http.models`, the same
classes that validate requests) and `docs_page()` (one self-contained HTML page, no scripts or
styles from elsewhere: the daemon may run without internet access).

Never does: describe anything the handlers do not do; an operation added to the app is added to
`OPERATIONS` here, and the schemathesis test checks the two agree.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.http import models

VERSION = "1"
REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    request: type[BaseModel] | None
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    problems: tuple[int, ...]
    path_id: str | None = None  # pattern of the {id} path parameter
    path_param: str = "id"  # its name
    query: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (name, description, schema)
    idempotent_key: bool = False
    extra_headers: dict[int, dict[str, str]] = field(default_factory=dict)


_AUTH_PROBLEMS = (401, 403, 429)
_NUMBER = r"^\+?[0-9]{1,15}$"
_PAGE_QUERY: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "limit",
        "At most this many (default 100)",
        {"type": "integer", "minimum": 1, "maximum": 1000},
    ),
    ("after", "The `next` of the previous page", {"type": "string", "minLength": 1}),
)
_MESSAGE_ID = r"^[0-9a-f]{20}$"
_OTP_ID = r"^otp_[0-9a-f]{20}$"
_INBOUND_ID = r"^[0-9]{1,19}$"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/v1/messages",
        "sendMessage",
        "Send a message to one recipient or up to 1,000",
        "Checks the number, route, sender, encoding and parts, stores the message durably and "
        "queues it; 202 means it is stored. A list in `to` gives one id per recipient (all or "
        "nothing: a bad recipient refuses the request and names it, e.g. `to[3]`).",
        "messages",
        models.SendMessageRequest,
        {
            202: (
                "Accepted and stored (an object for one recipient, `messages` for a list)",
                None,
            )
        },
        (400, *_AUTH_PROBLEMS, 409, 413, 422),
        idempotent_key=True,
    ),
    Operation(
        "post",
        "/v1/messages/preview",
        "previewMessage",
        "Encoding, characters, parts and route of a message, without sending it",
        "Nothing is stored or sent. `route.refusal_code` says why a destination would be refused.",
        "messages",
        models.PreviewRequest,
        {200: ("The preview", models.PreviewResponse)},
        (400, *_AUTH_PROBLEMS, 413, 422),
    ),
    Operation(
        "get",
        "/v1/messages/{id}",
        "getMessage",
        "Status, segments with carrier ids, history and timestamps of a message",
        "",
        "messages",
        None,
        {200: ("The message", models.MessageDetails)},
        (*_AUTH_PROBLEMS, 404),
        path_id=_MESSAGE_ID,
    ),
    Operation(
        "delete",
        "/v1/messages/{id}",
        "cancelMessage",
        "Cancel a message still waiting in the queue",
        "A message already handed to a carrier cannot be recalled: 409 `not_cancellable`.",
        "messages",
        None,
        {200: ("The canceled message (status `deleted`)", models.MessageDetails)},
        (*_AUTH_PROBLEMS, 404, 409),
        path_id=_MESSAGE_ID,
    ),
    Operation(
        "post",
        "/v1/otp",
        "sendOtp",
        "Send a one-time code",
        "The code comes from a CSPRNG unless `code` is given. A new request for the same "
        "number with the same key while a code is pending sends the same code again (same "
        "id, same expiry, counted as a send). OTP messages get the highest queue priority and "
        "are routed as `kind = otp`.",
        "otp",
        models.OtpSendRequest,
        {201: ("The verification", models.OtpView)},
        (400, *_AUTH_PROBLEMS, 409, 413, 422),
        idempotent_key=True,
    ),
    Operation(
        "get",
        "/v1/otp/{id}",
        "getOtp",
        "A verification's status",
        "",
        "otp",
        None,
        {200: ("The verification", models.OtpView)},
        (*_AUTH_PROBLEMS, 404),
        path_id=_OTP_ID,
    ),
    Operation(
        "post",
        "/v1/otp/{id}/check",
        "checkOtp",
        "Check a code",
        "200 with `approved`, or `pending` and the attempts left after a wrong code. A "
        "verification that ended answers with its status as the problem code: 410 `expired`, "
        "409 `canceled` or `already_approved`, 429 `max_attempts_reached`.",
        "otp",
        models.OtpCheckRequest,
        {200: ("The outcome of the check", models.OtpCheckResponse)},
        (400, *_AUTH_PROBLEMS, 404, 409, 410, 413, 422),
        path_id=_OTP_ID,
    ),
    Operation(
        "post",
        "/v1/otp/{id}/cancel",
        "cancelOtp",
        "Cancel a pending verification",
        "",
        "otp",
        None,
        {200: ("The canceled verification", models.OtpView)},
        (*_AUTH_PROBLEMS, 404, 409),
        path_id=_OTP_ID,
    ),
    Operation(
        "get",
        "/v1/optouts",
        "listOptOuts",
        "Opt-outs in force, by number, sender, group or scope",
        "Ordered by number; `next` pages on. A key limited to some senders must name `sender`.",
        "optouts",
        None,
        {200: ("A page of opt-outs", models.OptOutList)},
        (*_AUTH_PROBLEMS, 422),
        query=(
            ("number", "E.164", {"type": "string", "minLength": 1, "maxLength": 32}),
            ("sender", "Opt-outs of this sender", {"type": "string", "minLength": 1}),
            ("group", "Opt-outs of this sender group", {"type": "string", "minLength": 1}),
            (
                "scope",
                "sender, group or all",
                {"type": "string", "enum": ["sender", "group", "all"]},
            ),
            *_PAGE_QUERY,
        ),
    ),
    Operation(
        "put",
        "/v1/optouts/{number}",
        "putOptOut",
        "Stop messages to a number (from a sender, a sender group, or every sender)",
        "201 when the list changed, 200 when the opt-out was already in force. Every MT to the "
        "number from that scope is refused from now on (HTTP 403 `recipient_opted_out`).",
        "optouts",
        models.OptOutPutRequest,
        {
            200: ("Already in force", models.OptOutChanged),
            201: ("Recorded", models.OptOutChanged),
        },
        (400, *_AUTH_PROBLEMS, 413, 422),
        path_id=_NUMBER,
        path_param="number",
    ),
    Operation(
        "delete",
        "/v1/optouts/{number}",
        "deleteOptOut",
        "Remove a number's opt-outs (one scope, or all of them)",
        "With `scope` (and `sender` or `group`) that opt-out; without, every one of the number. "
        "404 when there was none.",
        "optouts",
        None,
        {200: ("The opt-outs removed", models.OptOutChanged)},
        (*_AUTH_PROBLEMS, 404, 422),
        path_id=_NUMBER,
        path_param="number",
        query=(
            (
                "scope",
                "sender, group or all",
                {"type": "string", "enum": ["sender", "group", "all"]},
            ),
            ("sender", "With scope sender", {"type": "string", "minLength": 1}),
            ("group", "With scope group", {"type": "string", "minLength": 1}),
            ("reason", "Kept in the audit trail", {"type": "string", "maxLength": 200}),
        ),
    ),
    Operation(
        "get",
        "/v1/inbound",
        "listInbound",
        "Inbound messages (MO) kept, newest first",
        "Every MO the carriers delivered: routed, unmatched or blocked. `number` matches the "
        "sender or the number it was sent to; `since`/`until` are ISO 8601 instants.",
        "inbound",
        None,
        {200: ("A page of inbound messages", models.InboundList)},
        (*_AUTH_PROBLEMS, 422),
        query=(
            ("number", "Sent from or to this number", {"type": "string", "pattern": _NUMBER}),
            ("since", "Received at or after", {"type": "string", "format": "date-time"}),
            ("until", "Received before", {"type": "string", "format": "date-time"}),
            *_PAGE_QUERY,
        ),
    ),
    Operation(
        "get",
        "/v1/inbound/{id}",
        "getInbound",
        "One inbound message",
        "",
        "inbound",
        None,
        {200: ("The inbound message", models.InboundView)},
        (*_AUTH_PROBLEMS, 404),
        path_id=_INBOUND_ID,
    ),
    Operation(
        "get",
        "/v1/optouts/{number}/history",
        "optOutHistory",
        "Every change of a number's opt-outs, oldest first",
        "Keyword (with the word, whether matched leniently, and the link), API (with the key), "
        "import or CLI; a repeated STOP is kept with `changed: false`.",
        "optouts",
        None,
        {200: ("The audit trail", models.OptOutHistory)},
        (*_AUTH_PROBLEMS, 422),
        path_id=_NUMBER,
        path_param="number",
        query=_PAGE_QUERY,
    ),
)

_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request (body not JSON, bad header)",
    401: "Missing, unknown or revoked API key",
    403: "The key lacks the scope, sender or destination country",
    404: "No such resource for this key",
    409: "Conflict with the resource's state",
    410: "Gone (expired)",
    413: "Body too large",
    422: "Invalid field: `field` names it, `errors` lists all",
    429: "Over a limit; see Retry-After",
}


def _schemas() -> dict[str, Any]:
    classes: list[type[BaseModel]] = [
        models.SendMessageRequest,
        models.MessageAccepted,
        models.MessageBatchAccepted,
        models.PreviewRequest,
        models.PreviewResponse,
        models.MessageDetails,
        models.OtpSendRequest,
        models.OtpCheckRequest,
        models.OtpView,
        models.OtpCheckResponse,
        models.OptOutPutRequest,
        models.OptOutChanged,
        models.OptOutList,
        models.OptOutHistory,
        models.InboundList,
        models.InboundView,
        models.ProblemDocument,
    ]
    inputs = {models.SendMessageRequest, models.PreviewRequest, models.OptOutPutRequest}
    inputs |= {models.OtpSendRequest, models.OtpCheckRequest}
    pairs = [(cls, "validation" if cls in inputs else "serialization") for cls in classes]
    _, document = models_json_schema(pairs, ref_template=REF, by_alias=True)  # type: ignore[arg-type]
    return dict(document.get("$defs", {}))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{"bearer": []}],
        "parameters": [],
        "responses": {},
    }
    if op.description:
        entry["description"] = op.description
    if op.path_id is not None:
        entry["parameters"].append(
            {
                "name": op.path_param,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": op.path_id},
            }
        )
    for name, description, query_schema in op.query:
        entry["parameters"].append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": query_schema,
            }
        )
    if op.idempotent_key:
        entry["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Repeat the request with the same key and body within 24 h to "
                "get the first answer again without sending anything new.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    if not entry["parameters"]:
        del entry["parameters"]
    if op.request is not None:
        entry["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.request)}},
        }
    for status, (description, model) in op.responses.items():
        if model is None and op.operation_id == "sendMessage":
            schema: dict[str, Any] = {
                "oneOf": [_ref(models.MessageAccepted), _ref(models.MessageBatchAccepted)]
            }
        else:
            schema = _ref(model) if model is not None else {}
        entry["responses"][str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    for status in (*op.problems, 500):
        response: dict[str, Any] = {
            "description": _PROBLEM_DESCRIPTIONS.get(status, "Server error"),
            "content": {"application/problem+json": {"schema": _ref(models.ProblemDocument)}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait"}
            }
        entry["responses"][str(status)] = response
    return entry


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tandem SMS gateway API",
            "version": VERSION,
            "description": "Send SMS and one-time codes through the gateway's routes. "
            "Authenticate with `Authorization: Bearer <key>` (`tandem keys create`). Errors "
            "are RFC 9457 problem details with a stable `code` and the `field` at fault. "
            "Receipt callbacks are POSTed as JSON to `callback_url`, signed in the "
            "`X-Tandem-Signature` header (`t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>`) "
            "with the key's callback secret.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


# --- /docs ----------------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{margin-top:2.5rem;border-bottom:1px solid #ddd}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.m{display:inline-block;min-width:4.5rem;font-weight:bold;text-transform:uppercase}
.post{color:#0a7}.get{color:#06c}.delete{color:#c33}.put{color:#a60}
code,pre{font:13px/1.4 ui-monospace,monospace;background:#f6f6f6}
pre{padding:.6rem;overflow:auto;border-radius:4px}
table{border-collapse:collapse}td{padding:.1rem .8rem .1rem 0;vertical-align:top}
"""


def _schema_json(schema: dict[str, Any]) -> str:
    return html.escape(json.dumps(schema, indent=2, ensure_ascii=False))


_CODE_SPAN = re.compile(r"`([^`]+)`")


def _prose(text: str) -> str:
    """Description text as HTML: escaped, with Markdown `code` spans as <code>."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))


def docs_page(document: dict[str, Any]) -> str:
    """The API reference as one HTML page (no external resources)."""
    info = document["info"]
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(info['title'])} (v{html.escape(info['version'])})</h1>",
        f"<p>{_prose(info['description'])}</p>",
        "<p>Machine-readable: <a href=/openapi.json><code>/openapi.json</code></a>.</p>",
        "<h2>Operations</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            out.append(f"<div class=op id={html.escape(op['operationId'])}>")
            out.append(
                f"<p><span class='m {method}'>{method}</span> <code>{html.escape(path)}</code>"
                f" &mdash; {_prose(op['summary'])}</p>"
            )
            if "description" in op:
                out.append(f"<p>{_prose(op['description'])}</p>")
            for parameter in op.get("parameters", []):
                out.append(
                    f"<p>{html.escape(parameter['in'])} parameter "
                    f"<code>{html.escape(parameter['name'])}</code>: "
                    f"<code>{_schema_json(parameter['schema'])}</code></p>"
                )
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                name = ref.rsplit("/", 1)[1]
                out.append(f"<p>Body: <a href=#schema-{name}><code>{name}</code></a></p>")
            out.append("<table>")
            for status, response in op["responses"].items():
                content: dict[str, Any] = response.get("content", {})
                first: dict[str, Any] = next(iter(content.values()), {})
                schema: dict[str, Any] = first.get("schema", {})
                refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("oneOf", [])]
                names = [r.rsplit("/", 1)[1] for r in refs if r]
                links = ", ".join(f"<a href=#schema-{n}><code>{n}</code></a>" for n in names)
                out.append(
                    f"<tr><td><b>{status}</b></td><td>{_prose(response['description'])}"
                    f"</td><td>{links}</td></tr>"
                )
            out.append("</table></div>")
    out.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        out.append(f"<h3 id=schema-{html.escape(name)}>{html.escape(name)}</h3>")
        out.append(f"<pre>{_schema_json(schema)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)
