"""Reading a customer's submit_sm / data_sm / submit_multi: validating it into `_Content` and the
`MessageRequest` intake takes, segment estimates for tps, and answering held parts. Pure
functions of the PDU and the account: no I/O, no server state; a bad submit raises `_Refused`
with the SMPP status to answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.accounts import Account
from gateway.addresses import InvalidSender, check_sender, source_address_type, source_ton_problem
from gateway.config import SendersConfig
from gateway.intake import MessageRequest
from gateway.messages import Channel
from gateway.smpp_server.settings import _Held, _Refused
from smpp.constants import ESM_CLASS_UDHI, CommandStatus, Tag
from smpp.pdu import Pdu
from smpp.reassembly import ConcatInfo, ConcatPart, MalformedUdh, concat_part_of
from smpp.session import response_to
from smpp.timefmt import InvalidSmppTime, parse_smpp_time


@dataclass(slots=True)
class _Content:
    """What a submit asks for, validated; `part` is set for one part of a concatenated one."""

    account: str
    source: str
    destination: str
    body: bytes
    esm_class: int
    segments: int
    part: ConcatPart | None
    fields: dict[str, Any] = field(default_factory=dict)

    def request(
        self,
        pdu: Pdu,
        destination: str,
        *,
        body: bytes | None = None,
        esm_class: int | None = None,
    ) -> MessageRequest:
        return MessageRequest(
            account=self.account,
            channel=Channel.SMPP,
            to=destination,
            sender=self.source,
            body=self.body if body is None else body,
            esm_class=self.esm_class if esm_class is None else esm_class,
            **self.fields,
        )


def _content_of(
    account: Account, pdu: Pdu, destination: str, now: float, senders: SendersConfig
) -> _Content:
    """Validate a submit_sm / data_sm / submit_multi; raises _Refused with the SMPP status."""
    source = str(getattr(pdu, "source_addr", ""))
    source_ton, source_npi = _source_type(account, pdu, source, senders)
    if not account.allows_sender(source):
        raise _Refused(CommandStatus.ESME_RINVSRCADR, f"sender {source!r} not allowed")
    if not destination:
        raise _Refused(CommandStatus.ESME_RINVDSTADR, "no destination")
    esm_class = int(getattr(pdu, "esm_class", 0))
    if esm_class & 0x3C:  # message type bits: a submit is never a receipt or an ack
        raise _Refused(CommandStatus.ESME_RINVESMCLASS, "esm_class message type set")
    tlvs: dict[int, object] = getattr(pdu, "tlvs", {})
    short_message: bytes = getattr(pdu, "short_message", b"")
    payload = tlvs.get(Tag.MESSAGE_PAYLOAD)
    if payload is not None and short_message:
        raise _Refused(CommandStatus.ESME_RINVOPTPARAMVAL, "short_message and message_payload")
    user_data = payload if isinstance(payload, bytes) else short_message
    if not user_data:
        raise _Refused(CommandStatus.ESME_RINVMSGLEN, "empty message")
    data_coding = int(getattr(pdu, "data_coding", 0))
    try:
        validity_at = parse_smpp_time(str(getattr(pdu, "validity_period", "")), now)
    except InvalidSmppTime as exc:
        raise _Refused(CommandStatus.ESME_RINVEXPIRY, str(exc)) from None
    try:
        send_at = parse_smpp_time(str(getattr(pdu, "schedule_delivery_time", "")), now)
    except InvalidSmppTime as exc:
        raise _Refused(CommandStatus.ESME_RINVSCHED, str(exc)) from None
    try:
        part = concat_part_of(short_message, esm_class, data_coding, tlvs)
    except MalformedUdh as exc:
        raise _Refused(CommandStatus.ESME_RINVESMCLASS, str(exc)) from None
    if part is not None:
        # Passed through as a part: it keeps (or, for SAR, gains) its UDH.
        body = user_data if esm_class & ESM_CLASS_UDHI else _udh(part.concat) + user_data
        esm = ESM_CLASS_UDHI
        segments = 1
    else:
        body = user_data
        esm = esm_class & ESM_CLASS_UDHI  # a UDH without concatenation (ports): kept
        segments = 1 if esm else estimate_segments(len(body), data_coding)
    return _Content(
        account=account.system_id,
        source=source,
        destination=destination,
        body=body,
        esm_class=esm,
        segments=segments,
        part=part,
        fields={
            "data_coding": data_coding,
            "kind": account.config.default_kind,
            "tags": account.route_tags,
            "source_ton": source_ton,
            "source_npi": source_npi,
            "registered_delivery": int(getattr(pdu, "registered_delivery", 0)),
            "validity_at": validity_at,
            "send_at": send_at if send_at is not None and send_at > now else None,
            "assume_international": int(getattr(pdu, "dest_addr_ton", 0)) == 1,
            "optout_status": account.config.optout_status,
        },
    )


def _source_type(
    account: Account, pdu: Pdu, source: str, senders: SendersConfig
) -> tuple[int, int]:
    """The TON/NPI a submit's sender goes with; refuses a malformed or over-long sender
    (never shortened) and, per the account's `source_ton_npi`, a TON that does not fit it."""
    ton = int(getattr(pdu, "source_addr_ton", 0))
    npi = int(getattr(pdu, "source_addr_npi", 0))
    if not source:
        return ton, npi
    try:
        kind = check_sender(source, senders, ton=ton)
    except InvalidSender as exc:
        raise _Refused(CommandStatus.ESME_RINVSRCADR, str(exc)) from None
    problem = source_ton_problem(kind, ton)
    if problem is None:
        return ton, npi
    if account.config.source_ton_npi == "check":
        raise _Refused(CommandStatus.ESME_RINVSRCTON, problem)
    return source_address_type(source)


def estimate_segments(octets: int, data_coding: int) -> int:
    """How many SMS parts a body of `octets` needs (for tps counting before intake runs).

    GSM 7-bit bodies are one octet per septet; 8-bit and UCS-2 bodies are octets. Concatenated
    parts lose 7 septets (6 octets) to the UDH.
    """
    if data_coding in (0, 1):
        single, multi = 160, 153
    else:
        single, multi = 140, 134
    if octets <= single:
        return 1
    return -(-octets // multi)


def _udh(concat: ConcatInfo) -> bytes:
    if concat.reference <= 0xFF:
        return bytes((5, 0x00, 3, concat.reference, concat.total, concat.seqnum))
    return bytes(
        (6, 0x08, 4, concat.reference >> 8, concat.reference & 0xFF, concat.total, concat.seqnum)
    )


def _answer_held(held: list[object], *, status: int = 0, message_id: str = "") -> None:
    for item in held:
        assert isinstance(item, _Held)
        if item.future.done():
            continue
        if status:
            item.future.set_result(response_to(item.pdu, command_status=status))
        else:
            item.future.set_result(response_to(item.pdu, message_id=message_id))
