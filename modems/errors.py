"""What a modem's `+CMS ERROR: n` and `+CME ERROR: n` mean, and whether a send may be retried.

Owns the names of the common codes (TS 27.005 3.2.5 for +CMS, which also carries the RP causes of
TS 24.011 E.2 and the TP-FCS values of TS 23.040 9.2.3.22; TS 27.007 9.2 for +CME) and the one
table that says which +CMS errors are temporary (the message may go again, here or through
another link) and which are permanent (the message itself is refused: do not retry it).
Must never decide what a link does about it (that is the modem session and the gateway).

Errors of the modem or SIM rather than of the message (SIM busy, no network, SMSC address
unknown, "unknown error" 500) are temporary: the message is fine, another SIM may send it.
"""

from __future__ import annotations

import enum


class FailureKind(enum.Enum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


CMS_ERROR_NAMES: dict[int, str] = {
    # RP causes (TS 24.011 E.2), as +CMS ERROR 0-127
    1: "unassigned number",
    8: "operator determined barring",
    10: "call barred",
    17: "network failure",
    21: "short message transfer rejected",
    22: "memory capacity exceeded",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error",
    127: "interworking unspecified",
    # TP-FCS (TS 23.040 9.2.3.22), as +CMS ERROR 128-255
    128: "telematic interworking not supported",
    129: "short message type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    160: "command cannot be actioned",
    161: "command unsupported",
    175: "unspecified TP-Command error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected: duplicate SM",
    198: "TP-VPF not supported",
    199: "TP-VP not supported",
    208: "SIM SMS storage full",
    209: "no SMS storage capability in SIM",
    210: "error in MS",
    211: "memory capacity exceeded",
    212: "SIM application toolkit busy",
    213: "SIM data download error",
    255: "unspecified error cause",
    # TS 27.005 3.2.5
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}

# Codes whose message may go again. Everything else (the rest of the RP causes, TP-FCS values
# and 27.005 codes, and codes we do not know) refuses the message for good... except unknown
# manufacturer codes (512 and up), which say nothing about the message: temporary.
_TEMPORARY_CMS = frozenset(
    {
        17,  # network failure
        22,  # memory capacity exceeded (at the destination, for now)
        27,  # destination out of service
        38,  # network out of order
        41,  # temporary failure
        42,  # congestion
        47,  # resources unavailable
        111,  # protocol error, unspecified: seen on flaky radio links
        127,  # interworking unspecified
        192,  # SC busy
        194,  # SC system failure
        210,  # error in MS
        212,  # SIM application toolkit busy
        300,  # ME failure
        301,  # SMS service of ME reserved
        310,  # SIM not inserted
        311,  # SIM PIN required
        312,  # PH-SIM PIN required
        313,  # SIM failure
        314,  # SIM busy
        315,  # SIM wrong
        316,  # SIM PUK required
        317,  # SIM PIN2 required
        318,  # SIM PUK2 required
        320,  # memory failure
        322,  # memory full
        330,  # SMSC address unknown
        331,  # no network service
        332,  # network timeout
        500,  # unknown error
    }
)

MANUFACTURER_CODES_FROM = 512


def cms_error_name(code: int) -> str:
    """The name of a +CMS ERROR code, or "error <n>" for codes outside the table."""
    return CMS_ERROR_NAMES.get(code, f"error {code}")


def cms_failure_kind(code: int) -> FailureKind:
    """Whether a +CMS ERROR on AT+CMGS refuses the message for good or only for now."""
    if code in _TEMPORARY_CMS or code >= MANUFACTURER_CODES_FROM:
        return FailureKind.TEMPORARY
    return FailureKind.PERMANENT


CME_ERROR_NAMES: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    100: "unknown",
}

CME_INCORRECT_PASSWORD = 16
CME_SIM_PUK_REQUIRED = 12

_CME_CODE_OF_NAME = {name.lower(): code for code, name in CME_ERROR_NAMES.items()}
_CMS_CODE_OF_NAME = {name.lower(): code for code, name in CMS_ERROR_NAMES.items()}


def cme_error_name(code: int) -> str:
    return CME_ERROR_NAMES.get(code, f"error {code}")


def cme_code_of(text: str) -> int | None:
    """The code of a verbose +CME ERROR text (AT+CMEE=2), or None when we do not know it."""
    return _CME_CODE_OF_NAME.get(text.strip().lower())


def cms_code_of(text: str) -> int | None:
    """The code of a verbose +CMS ERROR text, or None when we do not know it."""
    return _CMS_CODE_OF_NAME.get(text.strip().lower())
