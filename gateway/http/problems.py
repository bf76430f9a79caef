"""Errors of the HTTP API as RFC 9457 problem details (`application/problem+json`).

Owns `Problem` (raise it from a handler), `problem_response`, and the translation of pydantic
validation errors, intake refusals and OTP refusals into problems. Every problem carries a stable
machine-readable `code` (its `type` is `urn:tandem:problem:<code>`), the `field` at fault when
there is one, and `detail`, a sentence for people.

Never does: decide whether something is an error; callers do, this module only words it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.config import validation_reason
from gateway.intake import IntakeRefusal
from gateway.otp import OtpRefusal

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:tandem:problem:"


@dataclass(slots=True)
class FieldError:
    field: str
    code: str
    detail: str


@dataclass(slots=True)
class Problem(Exception):
    status: int
    code: str
    detail: str
    field: str | None = None
    errors: list[FieldError] = dataclasses.field(default_factory=list)
    retry_after: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.code,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        if self.errors:
            body["errors"] = [
                {"field": e.field, "code": e.code, "detail": e.detail} for e in self.errors
            ]
        if self.retry_after is not None:
            body["retry_after"] = retry_after_seconds(self.retry_after)
        body.update(self.extra)
        return body


def retry_after_seconds(seconds: float) -> int:
    """Whole seconds for `Retry-After` (at least 1: 0 would invite an immediate retry)."""
    return max(1, math.ceil(seconds))


def problem_response(problem: Problem) -> web.Response:
    headers = dict(problem.headers)
    if problem.retry_after is not None:
        headers["Retry-After"] = str(retry_after_seconds(problem.retry_after))
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.document(), ensure_ascii=False).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def from_validation_error(
    exc: ValidationError, aliases: Mapping[str, str] | None = None
) -> Problem:
    """A 422 naming every field at fault (the first one is the problem's `field`), or a 400
    when the body is not JSON at all."""
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            reason = error.get("ctx", {}).get("error", "")
            return Problem(400, "malformed_json", _sentence(f"the body is not JSON: {reason}"))
    errors = [
        FieldError(
            field=_location(error["loc"], aliases or {}) or "(body)",
            code=_error_code(error["type"]),
            detail=_sentence(validation_reason(error)),
        )
        for error in exc.errors(include_url=False)
    ]
    first = errors[0]
    detail = f"{first.field}: {first.detail}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return Problem(422, first.code, detail, field=first.field, errors=errors)


def from_intake_refusal(refusal: IntakeRefusal, field_prefix: str = "") -> Problem:
    field_name = refusal.field
    if field_prefix and field_name == "to":
        field_name = field_prefix
    return Problem(
        refusal.http_status,
        refusal.code,
        _sentence(refusal.reason),
        field=field_name,
        retry_after=refusal.retry_after,
    )


def from_otp_refusal(refusal: OtpRefusal) -> Problem:
    extra: dict[str, Any] = {}
    if refusal.otp_status is not None:
        extra["otp_status"] = refusal.otp_status
    return Problem(
        refusal.http_status,
        refusal.code,
        _sentence(refusal.reason),
        field=refusal.field,
        retry_after=refusal.retry_after,
        extra=extra,
    )


_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "string_too_short": "too_short",
    "string_too_long": "too_long",
    "too_short": "too_few_items",
    "too_long": "too_many_items",
    "string_pattern_mismatch": "invalid_format",
    "literal_error": "invalid_choice",
    "enum": "invalid_choice",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than": "out_of_range",
    "value_error": "invalid_value",
    "json_invalid": "malformed_json",
    "model_type": "invalid_type",
    "model_attributes_type": "invalid_type",
    "dict_type": "invalid_type",
    "timezone_aware": "missing_timezone",
    "invalid_sender": "invalid_sender",
}


_UNION_TAGS = frozenset({"single", "list"})


def _error_code(kind: str) -> str:
    if kind in _CODES:
        return _CODES[kind]
    if kind.endswith(("_type", "_parsing")):
        return "invalid_type"
    return "invalid_value"


def _location(loc: Sequence[int | str], aliases: Mapping[str, str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        if part in _UNION_TAGS:  # which member of a union was tried: not a field
            continue
        name = aliases.get(part, part)
        text += f".{name}" if text else name
    return text


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."
