"""SMPP 3.4 PDUs as plain data: one slots dataclass per operation.

Owns the shape of every PDU: the header fields every PDU has (`sequence_number`, `command_status`),
the mandatory parameters by their spec names, and `tlvs` where the operation carries optional
parameters. Must never hold wire knowledge (that is `smpp.codec`) nor session rules (that is
`smpp.session`).

Conventions:
- C-Octet Strings are `str` (decoded as latin-1 so every octet survives), `short_message` is
  `bytes`, integers are `int`. `command_status` is a plain `int` so vendor codes survive.
- Counts that the wire derives from a list or a string (`sm_length`, `number_of_dests`,
  `no_unsuccess`) are not fields: the codec computes them, so they can never disagree.
- `tlvs` maps tag -> value, typed for known tags (int for integer TLVs, str for C-Octet String
  TLVs such as receipted_message_id, bytes for octet strings such as message_payload) and raw
  `bytes` for unknown tags; insertion order is the wire order.
- A request's `.response(**fields)` builds its response with the same sequence_number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from smpp.constants import CommandId


@dataclass(slots=True)
class Pdu:
    """Header fields shared by every PDU; subclasses add their body."""

    command_id: ClassVar[CommandId]
    sequence_number: int = 0
    command_status: int = 0


# --- address elements of submit_multi / submit_multi_resp -------------------------------------


@dataclass(slots=True)
class SmeAddress:
    """A dest_address with dest_flag 1 (an SME address)."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(slots=True)
class DistributionList:
    """A dest_address with dest_flag 2 (a distribution list name known to the SMSC)."""

    dl_name: str = ""


@dataclass(slots=True)
class UnsuccessSme:
    """One entry of submit_multi_resp's unsuccess_sme list."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0


# --- bind ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class BindTransmitterResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP
    system_id: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class BindReceiverResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP
    system_id: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class BindTransceiverResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP
    system_id: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class BindTransmitter(Pdu):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER
    system_id: str = ""
    password: str = field(default="", repr=False)  # kept out of logs that show PDUs
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def response(self, **fields: Any) -> BindTransmitterResp:
        return BindTransmitterResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class BindReceiver(Pdu):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER
    system_id: str = ""
    password: str = field(default="", repr=False)  # kept out of logs that show PDUs
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def response(self, **fields: Any) -> BindReceiverResp:
        return BindReceiverResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class BindTransceiver(Pdu):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER
    system_id: str = ""
    password: str = field(default="", repr=False)  # kept out of logs that show PDUs
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def response(self, **fields: Any) -> BindTransceiverResp:
        return BindTransceiverResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class Outbind(Pdu):
    """SMSC asks the ESME to bind as a receiver; it has no response."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    system_id: str = ""
    password: str = field(default="", repr=False)  # kept out of logs that show PDUs


# --- session housekeeping -----------------------------------------------------------------------


@dataclass(slots=True)
class UnbindResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(slots=True)
class Unbind(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND

    def response(self, **fields: Any) -> UnbindResp:
        return UnbindResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class EnquireLinkResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@dataclass(slots=True)
class EnquireLink(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK

    def response(self, **fields: Any) -> EnquireLinkResp:
        return EnquireLinkResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class GenericNack(Pdu):
    """Answer to a PDU that could not be understood; it has no body and no response."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


# --- messages -----------------------------------------------------------------------------------


@dataclass(slots=True)
class SubmitSmResp(Pdu):
    """message_id is empty (and the body absent on the wire) when command_status is an error.

    `tlvs` is not in SMPP 3.4 but SMSCs speaking 5.0 send them; they are kept, not refused.
    """

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    message_id: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class SubmitSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, object] = field(default_factory=dict)

    def response(self, **fields: Any) -> SubmitSmResp:
        return SubmitSmResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class SubmitMultiResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI_RESP
    message_id: str = ""
    unsuccess_sme: list[UnsuccessSme] = field(default_factory=list)
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class SubmitMulti(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: list[SmeAddress | DistributionList] = field(default_factory=list)
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, object] = field(default_factory=dict)

    def response(self, **fields: Any) -> SubmitMultiResp:
        return SubmitMultiResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class DeliverSmResp(Pdu):
    """message_id is unused in SMPP 3.4 (always empty); `tlvs` tolerated as for SubmitSmResp."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    message_id: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class DeliverSm(Pdu):
    """A mobile-originated message or a delivery receipt (esm_class says which)."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, object] = field(default_factory=dict)

    def response(self, **fields: Any) -> DeliverSmResp:
        return DeliverSmResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class DataSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    message_id: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


@dataclass(slots=True)
class DataSm(Pdu):
    """Message without short_message: the payload travels in the message_payload TLV."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: dict[int, object] = field(default_factory=dict)

    def response(self, **fields: Any) -> DataSmResp:
        return DataSmResp(sequence_number=self.sequence_number, **fields)


# --- message management -------------------------------------------------------------------------


@dataclass(slots=True)
class QuerySmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True)
class QuerySm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""

    def response(self, **fields: Any) -> QuerySmResp:
        return QuerySmResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class CancelSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP


@dataclass(slots=True)
class CancelSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""

    def response(self, **fields: Any) -> CancelSmResp:
        return CancelSmResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class ReplaceSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP


@dataclass(slots=True)
class ReplaceSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""

    def response(self, **fields: Any) -> ReplaceSmResp:
        return ReplaceSmResp(sequence_number=self.sequence_number, **fields)


@dataclass(slots=True)
class AlertNotification(Pdu):
    """SMSC tells the ESME that a mobile became available; it has no response."""

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: dict[int, object] = field(default_factory=dict)


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindReceiver,
        BindReceiverResp,
        BindTransmitter,
        BindTransmitterResp,
        QuerySm,
        QuerySmResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        Unbind,
        UnbindResp,
        ReplaceSm,
        ReplaceSmResp,
        CancelSm,
        CancelSmResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        EnquireLink,
        EnquireLinkResp,
        SubmitMulti,
        SubmitMultiResp,
        AlertNotification,
        DataSm,
        DataSmResp,
    )
}
"""CommandId -> PDU class, for every operation of SMPP 3.4."""

REQUEST_TYPES: tuple[type[Pdu], ...] = tuple(
    cls for cls in PDU_CLASSES.values() if not cls.command_id.is_response
)
"""Requests (including outbind and alert_notification, which have no response)."""
