"""The HTTP API's bodies: pydantic models that validate requests and describe responses.

Owns every request and response shape of `/v1` and the problem document's shape. The OpenAPI
document (`gateway.http.openapi`) is generated from these same classes, so what is documented is
what is validated.

Never does: business checks that need the daemon (numbers, routes, limits, scopes): those are
the intake's and the handlers'. Models check shape, types, lengths and ranges only.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag
from pydantic_core import PydanticCustomError

from gateway.addresses import (
    NUMBER_MAX_DIGITS,
    SENDER_DESCRIPTION,
    InvalidSender,
    check_sender,
)

_REQUEST = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
_RESPONSE = ConfigDict(populate_by_name=True)

Recipient = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="E.164 ('+447700900123') or, with a default region configured, national",
        examples=["+447700900123"],
    ),
]


def _valid_sender(value: str) -> str:
    # The shape; which short codes the daemon's `[senders]` allows is the intake's check.
    try:
        check_sender(value)
    except InvalidSender as exc:
        raise PydanticCustomError("invalid_sender", str(exc)) from None
    return value


Sender = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1 + NUMBER_MAX_DIGITS,
        description=SENDER_DESCRIPTION,
        examples=["Tandem"],
    ),
    AfterValidator(_valid_sender),
]
CallbackUrl = Annotated[
    str, Field(max_length=2048, pattern=r"^https?://[^\s]+$", examples=["https://example.com/dlr"])
]
Kind = Literal["transactional", "bulk", "otp"]


def _one_or_many(value: object) -> str:
    # Validation errors then name only the shape that was sent, not both union members.
    return "list" if isinstance(value, list) else "single"


class SendMessageRequest(BaseModel):
    """One text or binary message to one recipient, or to a list of recipients."""

    model_config = ConfigDict(
        **_REQUEST,
        json_schema_extra={
            "examples": [
                {"to": "+447911123456", "from": "Acme", "text": "Your parcel arrives today."}
            ]
        },
    )

    to: Annotated[
        Annotated[Recipient, Tag("single")]
        | Annotated[list[Recipient], Field(min_length=1, max_length=1000), Tag("list")],
        Discriminator(_one_or_many),
    ]
    from_: Sender | None = Field(default=None, alias="from")
    text: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    binary: (
        Annotated[
            str, Field(min_length=1, max_length=20_000, description="Base64 of the encoded body")
        ]
        | None
    ) = None
    data_coding: Annotated[int, Field(ge=0, le=255)] | None = None
    kind: Kind = "transactional"
    validity: (
        Annotated[
            int,
            Field(
                ge=60,
                le=1_209_600,
                description="Seconds to try delivering, from send_at (or now); then expired",
            ),
        ]
        | None
    ) = None
    send_at: Annotated[datetime, Field(description="Scheduled send time (ISO 8601, with zone)")] | (
        None
    ) = None
    callback_url: CallbackUrl | None = None
    reference: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"

    def content_error(self) -> ContentError | None:
        error = _content_error(self.text, self.binary, self.data_coding, self.encoding)
        if error is None and self.send_at is not None and self.send_at.tzinfo is None:
            return ContentError(
                "send_at", "missing_timezone", "send_at needs a time zone, e.g. 2030-01-01T09:00Z"
            )
        return error

    def body_bytes(self) -> bytes | None:
        return None if self.binary is None else base64.b64decode(self.binary, validate=True)

    def recipients(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


@dataclass(slots=True, frozen=True)
class ContentError:
    """A check across fields (which content is given), reported on the field at fault."""

    field: str
    code: str
    detail: str

    @property
    def sentence(self) -> str:
        return self.detail[:1].upper() + self.detail[1:] + "."


def _content_error(
    text: str | None, binary: str | None, data_coding: int | None, encoding: str
) -> ContentError | None:
    if text is None and binary is None:
        return ContentError("text", "missing_content", "give either text or binary")
    if text is not None and binary is not None:
        return ContentError("binary", "conflicting_content", "give text or binary, not both")
    if binary is not None:
        try:
            base64.b64decode(binary, validate=True)
        except (binascii.Error, ValueError):
            return ContentError("binary", "invalid_base64", "binary must be base64")
        if encoding != "auto":
            return ContentError(
                "encoding", "conflicting_content", "encoding applies to text, not binary"
            )
    elif data_coding is not None:
        return ContentError(
            "data_coding", "conflicting_content", "data_coding applies to binary, not text"
        )
    return None


class PreviewRequest(BaseModel):
    """What a message would look like on the air and where it would go; nothing is sent."""

    model_config = ConfigDict(
        **_REQUEST,
        json_schema_extra={"examples": [{"to": "+447911123456", "text": "Grüße aus Köln"}]},
    )

    to: Recipient
    from_: Sender | None = Field(default=None, alias="from")
    text: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    binary: Annotated[str, Field(min_length=1, max_length=20_000)] | None = None
    data_coding: Annotated[int, Field(ge=0, le=255)] | None = None
    kind: Kind = "transactional"
    encoding: Literal["auto", "gsm7", "ucs2"] = "auto"

    def content_error(self) -> ContentError | None:
        return _content_error(self.text, self.binary, self.data_coding, self.encoding)

    def body_bytes(self) -> bytes | None:
        return None if self.binary is None else base64.b64decode(self.binary, validate=True)


class MessageAccepted(BaseModel):
    model_config = _RESPONSE

    id: str
    status: str
    to: str = Field(description="The recipient in E.164")
    parts: int
    encoding: str
    route: str | None = None
    reference: str | None = None


class MessageBatchAccepted(BaseModel):
    model_config = _RESPONSE

    messages: list[MessageAccepted] = Field(description="One entry per recipient, in order")


class SegmentView(BaseModel):
    model_config = _RESPONSE

    index: int
    total: int
    status: str
    link: str | None = None
    carrier_id: str | None = None
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    error: str | None = None
    network_error: str | None = None


class HistoryView(BaseModel):
    model_config = _RESPONSE

    at: datetime
    status: str
    source: str
    detail: str
    changed: bool
    segment: int | None = None


class MessageDetails(BaseModel):
    model_config = _RESPONSE

    id: str
    status: str
    to: str
    from_: str = Field(alias="from")
    kind: str
    encoding: str
    route: str | None = None
    link: str | None = None
    reference: str | None = None
    callback_url: str | None = None
    attempts: int
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    send_at: datetime | None = None
    validity_at: datetime | None = None
    segments: list[SegmentView]
    history: list[HistoryView]


class RoutePreview(BaseModel):
    model_config = _RESPONSE

    route: str | None = None
    targets: list[str] = Field(default_factory=list)
    next_target: str | None = None
    sender: str | None = None
    country: str | None = None
    mno: str | None = None
    refusal_code: str | None = None
    refusal_reason: str | None = None


class PreviewResponse(BaseModel):
    model_config = _RESPONSE

    to: str | None = Field(description="The recipient in E.164, when it is a valid number")
    encoding: str
    characters: int | None = None
    units: int
    parts: int
    units_per_part: int | None = None
    route: RoutePreview


class OtpSendRequest(BaseModel):
    """Send a one-time code (generated here, or the caller's own `code`)."""

    model_config = ConfigDict(
        **_REQUEST,
        json_schema_extra={"examples": [{"to": "+447911123456", "code_length": 6, "ttl": 300}]},
    )

    to: Recipient
    from_: Sender | None = Field(default=None, alias="from")
    template: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=1000,
                description="Text with {{code}}, optionally {{ttl_minutes}} and {{brand}}",
            ),
        ]
        | None
    ) = None
    code_length: Annotated[int, Field(ge=4, le=10)] | None = None
    ttl: Annotated[int, Field(ge=60, le=3600, description="Seconds the code is valid")] | None = (
        None
    )
    locale: Annotated[str, Field(min_length=2, max_length=16, pattern=r"^[A-Za-z_-]+$")] | None = (
        None
    )
    code: Annotated[str, Field(pattern=r"^[0-9A-Za-z]{4,10}$")] | None = None


class OtpCheckRequest(BaseModel):
    model_config = ConfigDict(**_REQUEST, json_schema_extra={"examples": [{"code": "123456"}]})

    code: Annotated[str, Field(min_length=1, max_length=10, pattern=r"^[0-9A-Za-z]+$")]


class OtpView(BaseModel):
    model_config = _RESPONSE

    id: str
    to: str
    status: Literal["pending", "approved", "expired", "canceled", "max_attempts_reached"]
    expires_at: datetime
    message_id: str | None = None
    sends: int
    attempts_left: int
    created_at: datetime


class OtpCheckResponse(BaseModel):
    model_config = _RESPONSE

    id: str
    status: Literal["approved", "pending"]
    attempts_left: int


class ProblemFieldError(BaseModel):
    field: str
    code: str
    detail: str


class ProblemDocument(BaseModel):
    """RFC 9457 problem details, with a stable `code` and the `field` at fault."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:tandem:problem:invalid_number"])
    title: str
    status: int
    code: str
    detail: str
    field: str | None = None
    errors: list[ProblemFieldError] | None = None
    retry_after: int | None = None
    otp_status: str | None = None
    attempts_left: int | None = None


# --- /v1/optouts -------------------------------------------------------------------------------

OptOutScopeName = Literal["sender", "group", "all"]


class OptOutPutRequest(BaseModel):
    """Stop messages to a number: from one sender (default), a sender group, or every sender."""

    model_config = ConfigDict(
        **_REQUEST,
        json_schema_extra={
            "examples": [{"scope": "sender", "sender": "12345", "reason": "asked by phone"}]
        },
    )

    scope: OptOutScopeName = "sender"
    sender: Sender | None = Field(default=None, description="With scope `sender`")
    group: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] | None
    ) = Field(default=None, description="With scope `group`: a `[[sender_groups]]` name")
    reason: Annotated[str, Field(max_length=200)] = ""


class OptOutView(BaseModel):
    """One opt-out in force."""

    model_config = _RESPONSE

    number: str = Field(examples=["+447911123456"])
    scope: OptOutScopeName
    sender: str | None = None
    group: str | None = None
    created_at: datetime
    via: Literal["keyword", "api", "import", "cli"]
    keyword: str | None = None
    source: str
    reason: str


class OptOutChanged(BaseModel):
    """What a PUT or DELETE did: the opt-outs it was about, and whether the list changed."""

    model_config = _RESPONSE

    number: str
    changed: bool
    optouts: list[OptOutView] = Field(description="PUT: the opt-out in force; DELETE: removed")


class OptOutList(BaseModel):
    model_config = _RESPONSE

    optouts: list[OptOutView]
    next: str | None = Field(default=None, description="Pass as `after` for the next page")


class OptOutHistoryEntry(BaseModel):
    model_config = _RESPONSE

    id: int
    action: Literal["opt_out", "opt_in"]
    scope: OptOutScopeName
    sender: str | None = None
    group: str | None = None
    via: Literal["keyword", "api", "import", "cli"]
    keyword: str | None = None
    lenient: bool
    source: str
    reason: str
    changed: bool
    at: datetime


class OptOutHistory(BaseModel):
    model_config = _RESPONSE

    number: str
    history: list[OptOutHistoryEntry]
    next: str | None = None


class InboundView(BaseModel):
    """One inbound message (MO) as the gateway kept it."""

    model_config = _RESPONSE

    id: str
    state: Literal["routed", "unmatched", "blocked"]
    from_: str = Field(alias="from", examples=["+447911123456"])
    to: str = Field(examples=["12345"])
    text: str | None = Field(description="None for binary data (see payload_hex)")
    payload_hex: str | None = None
    data_coding: int
    parts: int
    complete: bool = Field(description="False: a part whose other parts never arrived")
    link: str
    received_at: datetime
    carrier_timestamp: datetime | None = None
    keyword: str | None = None
    keyword_class: Literal["opt_out", "opt_in", "help"] | None = None
    lenient: bool = False
    route: str | None = None
    webhook_pending: bool = False
    webhook_error: str | None = None


class InboundList(BaseModel):
    model_config = _RESPONSE

    inbound: list[InboundView]
    next: str | None = Field(default=None, description="Pass as `after` for the next page")
