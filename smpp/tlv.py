"""Value types of SMPP 3.4 TLVs (section 5.3.2): which tags hold integers, which C-Octet Strings.

Owns the table that tells the codec how to type a TLV value. Every tag not listed in
`INTEGER_TLV_SIZES` or `CSTRING_TLV_MAX` is an octet string (`bytes`), and so is every tag the
spec does not know (vendor tags): those are kept raw and re-encoded unchanged. Must never hold
wire framing (that is `smpp.codec`).
"""

from __future__ import annotations

from smpp.constants import Tag

_INTEGER_TLVS: dict[Tag, int] = {
    Tag.DEST_ADDR_SUBUNIT: 1,
    Tag.DEST_NETWORK_TYPE: 1,
    Tag.DEST_BEARER_TYPE: 1,
    Tag.DEST_TELEMATICS_ID: 2,
    Tag.SOURCE_ADDR_SUBUNIT: 1,
    Tag.SOURCE_NETWORK_TYPE: 1,
    Tag.SOURCE_BEARER_TYPE: 1,
    Tag.SOURCE_TELEMATICS_ID: 1,
    Tag.QOS_TIME_TO_LIVE: 4,
    Tag.PAYLOAD_TYPE: 1,
    Tag.MS_MSG_WAIT_FACILITIES: 1,
    Tag.PRIVACY_INDICATOR: 1,
    Tag.USER_MESSAGE_REFERENCE: 2,
    Tag.USER_RESPONSE_CODE: 1,
    Tag.SOURCE_PORT: 2,
    Tag.DESTINATION_PORT: 2,
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.LANGUAGE_INDICATOR: 1,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.CALLBACK_NUM_PRES_IND: 1,
    Tag.NUMBER_OF_MESSAGES: 1,
    Tag.DPF_RESULT: 1,
    Tag.SET_DPF: 1,
    Tag.MS_AVAILABILITY_STATUS: 1,
    Tag.DELIVERY_FAILURE_REASON: 1,
    Tag.MORE_MESSAGES_TO_SEND: 1,
    Tag.MESSAGE_STATE: 1,
    # The spec calls it a 1-octet "Octet String", but its value is a service-operation code.
    Tag.USSD_SERVICE_OP: 1,
    Tag.DISPLAY_TIME: 1,
    Tag.SMS_SIGNAL: 2,
    Tag.MS_VALIDITY: 1,
    Tag.ITS_REPLY_TYPE: 1,
}
_CSTRING_TLVS: dict[Tag, int] = {
    Tag.ADDITIONAL_STATUS_INFO_TEXT: 256,
    Tag.RECEIPTED_MESSAGE_ID: 65,
}

# Keyed by plain ints: the codec looks tags up by the int it read, and an int key finds an int
# faster than an enum member.
INTEGER_TLV_SIZES: dict[int, int] = {int(tag): size for tag, size in _INTEGER_TLVS.items()}
"""Integer TLVs: tag -> size in octets (big-endian, unsigned); the value is an `int`."""

CSTRING_TLV_MAX: dict[int, int] = {int(tag): size for tag, size in _CSTRING_TLVS.items()}
"""C-Octet String TLVs: tag -> maximum size in octets including the NUL; the value is a `str`."""

# Octet-string TLVs (value `bytes`): source_subaddress, dest_subaddress, callback_num,
# callback_num_atag, network_error_code (3 octets: network type + error code),
# message_payload, its_session_info, alert_on_message_delivery (empty).
