"""Receipt parsing: the corpus of real-world shapes, TLV precedence, esm_class, and fuzzing."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlr.ids import MessageIdFormat, canonical_message_id
from dlr.receipt import (
    _CANONICAL,
    DeliveryReceipt,
    NetworkError,
    UnparseableReceipt,
    _text_fields,
    _text_fields_by_words,
    is_receipt,
    looks_like_receipt,
)
from dlr.status import SegmentStatus
from smpp.constants import Tag

CORPUS = Path(__file__).parent / "data" / "receipts.txt"


def _corpus() -> list[dict[str, Any]]:
    entries = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            entries.append(json.loads(line))
    return entries


def _tlvs(entry: dict[str, Any]) -> dict[int, object]:
    tlvs: dict[int, object] = {}
    for name, value in entry.get("tlvs", {}).items():
        tlvs[Tag[name]] = bytes.fromhex(value["hex"]) if isinstance(value, dict) else value
    return tlvs


def _short_message(entry: dict[str, Any]) -> bytes | str:
    if "short_message_hex" in entry:
        return bytes.fromhex(entry["short_message_hex"])
    return str(entry["short_message"])


ENTRIES = _corpus()


def test_corpus_has_at_least_thirty_receipts() -> None:
    assert len([entry for entry in ENTRIES if "expect" in entry]) >= 30


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["vendor"] for entry in ENTRIES])
def test_corpus_receipt_parses_as_expected(entry: dict[str, Any]) -> None:
    short_message = _short_message(entry)
    esm_class = entry.get("esm_class", 0x04)
    if "expect_error" in entry:
        with pytest.raises(UnparseableReceipt) as raised:
            DeliveryReceipt.parse(short_message, _tlvs(entry), esm_class)
        assert raised.value.reason.startswith(entry["expect_error"])
        return
    # Octets and text must read the same.
    forms = [short_message]
    if isinstance(short_message, str):
        forms.append(short_message.encode("latin-1"))
    for form in forms:
        receipt = DeliveryReceipt.parse(form, _tlvs(entry), esm_class)
        for name, expected in entry["expect"].items():
            if name in ("id_format", "canonical"):
                continue
            actual = getattr(receipt, name)
            if isinstance(actual, datetime):
                actual = actual.isoformat()
            elif isinstance(actual, NetworkError):
                actual = [actual.network_type, actual.error_code]
            elif isinstance(actual, SegmentStatus):
                actual = actual.value
            assert actual == expected, name
        if "canonical" in entry["expect"]:
            fmt = MessageIdFormat(entry["expect"]["id_format"])
            assert canonical_message_id(receipt.message_id, fmt) == entry["expect"]["canonical"]


def test_receipt_without_text_field_and_with_text_field_carry_same_facts() -> None:
    with_text = DeliveryReceipt.parse(
        "id:42 sub:001 dlvrd:001 submit date:2401010000 done date:2401010001 "
        "stat:DELIVRD err:000 text:abc"
    )
    without = DeliveryReceipt.parse(
        "id:42 sub:001 dlvrd:001 submit date:2401010000 done date:2401010001 stat:DELIVRD err:000"
    )
    assert (with_text.message_id, with_text.status, with_text.done_date) == (
        without.message_id,
        without.status,
        without.done_date,
    )
    assert (with_text.text, without.text) == ("abc", None)


def test_message_state_tlv_wins_over_text_stat_and_keeps_network_error() -> None:
    receipt = DeliveryReceipt.parse(
        b"id:1 stat:DELIVRD err:000",
        {Tag.MESSAGE_STATE: 8, Tag.NETWORK_ERROR_CODE: (3, 11), Tag.RECEIPTED_MESSAGE_ID: "2"},
    )
    assert receipt.status is SegmentStatus.REJECTED
    assert receipt.message_id == "2"
    assert receipt.network_error == NetworkError(3, 11)
    assert receipt.stat == "DELIVRD"  # the text's evidence is kept


def test_message_state_as_one_octet_is_read() -> None:
    receipt = DeliveryReceipt.parse(
        b"", {Tag.RECEIPTED_MESSAGE_ID: b"ab\x00", Tag.MESSAGE_STATE: b"\x03"}
    )
    assert (receipt.message_id, receipt.status) == ("ab", SegmentStatus.EXPIRED)


def test_malformed_tlv_values_fall_back_to_text() -> None:
    receipt = DeliveryReceipt.parse(
        "id:5 stat:UNDELIV err:001",
        {Tag.RECEIPTED_MESSAGE_ID: 17, Tag.MESSAGE_STATE: "x", Tag.NETWORK_ERROR_CODE: b"\x01"},
    )
    assert (receipt.message_id, receipt.status, receipt.network_error) == (
        "5",
        SegmentStatus.UNDELIVERABLE,
        None,
    )


def test_intermediate_flag_follows_esm_class_as_well_as_the_state() -> None:
    text = "id:9 stat:DELIVRD err:000"
    assert DeliveryReceipt.parse(text, {}, 0x04).intermediate is False
    assert DeliveryReceipt.parse(text, {}, 0x20).intermediate is True
    assert DeliveryReceipt.parse("id:9 stat:ENROUTE", {}, 0x04).intermediate is True


@pytest.mark.parametrize(
    ("esm_class", "expected"),
    [
        (0x04, True),
        (0x20, True),
        (0x24, False),
        (0x00, False),
        (0x08, False),
        (0x10, False),
        (0x44, True),
        (0x84, True),
        (0x07, True),
        (0x40, False),
    ],
)
def test_is_receipt_reads_only_the_message_type_bits(esm_class: int, expected: bool) -> None:
    assert is_receipt(esm_class) is expected


def test_looks_like_receipt_spots_receipts_sent_with_esm_class_zero() -> None:
    assert looks_like_receipt(b"id:1 sub:001 stat:DELIVRD")
    assert looks_like_receipt("ID: 1 STAT: DELIVRD")
    assert not looks_like_receipt("see you at the station: 5pm, id card needed")
    assert not looks_like_receipt("stat:DELIVRD id:")  # order matters for this heuristic


def test_unparseable_receipt_keeps_the_raw_text_for_the_operator() -> None:
    with pytest.raises(UnparseableReceipt) as raised:
        DeliveryReceipt.parse(b"id:77 stat:WHATEVER")
    assert raised.value.raw == "id:77 stat:WHATEVER"
    assert isinstance(raised.value, ValueError)


_TLV_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.binary(max_size=8),
    st.text(max_size=8),
    st.tuples(st.integers(-5, 300), st.integers(-5, 70000)),
    st.booleans(),
)
_RECEIPTISH = st.lists(
    st.sampled_from(
        [
            "id:",
            "ID:",
            "sub:",
            "dlvrd:",
            "submit date:",
            "done date:",
            "stat:",
            "err:",
            "text:",
            "DELIVRD",
            "UNDELIV",
            "0A1B",
            "2401011200",
            "240101120000",
            " ",
            "  ",
            ":",
            "\x00",
            "\t",
            "-",
            "x",
            "0x",
            "999999999999999999",
        ]
    )
    | st.text(max_size=6),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(st.binary(max_size=300), st.text(max_size=300), _RECEIPTISH),
    tlvs=st.dictionaries(
        st.sampled_from(
            [
                Tag.RECEIPTED_MESSAGE_ID,
                Tag.MESSAGE_STATE,
                Tag.NETWORK_ERROR_CODE,
                Tag.MESSAGE_PAYLOAD,
                0x1400,
            ]
        ),
        _TLV_VALUES,
        max_size=4,
    ),
    esm_class=st.integers(0, 255),
)
def test_parser_raises_nothing_but_its_own_error_on_any_input(
    body: bytes | str, tlvs: dict[int, object], esm_class: int
) -> None:
    try:
        receipt = DeliveryReceipt.parse(body, tlvs, esm_class)
    except UnparseableReceipt:
        return
    assert receipt.message_id
    assert isinstance(receipt.status, SegmentStatus)


def test_tlv_and_text_ids_are_read_under_their_own_formats() -> None:
    text = "id:2587 sub:001 dlvrd:001 stat:DELIVRD err:000"
    from_text = DeliveryReceipt.parse(text)
    from_tlv = DeliveryReceipt.parse(text, {Tag.RECEIPTED_MESSAGE_ID: "0a1b"})
    dec, hex_ = MessageIdFormat.DEC, MessageIdFormat.HEX
    assert from_text.canonical_id(dec, tlv_format=hex_) == "2587"
    assert from_tlv.canonical_id(dec, tlv_format=hex_) == "2587"
    # Without a TLV format, the TLV id is read like the text one.
    assert from_tlv.canonical_id(hex_) == "2587"


# --- the canonical fast path gives what the general reader gives ---------------------------------

_TOKEN = st.text(alphabet="0123456789abcdefABCDEF:-_.", min_size=1, max_size=12)


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["vendor"] for entry in ENTRIES])
def test_fast_path_and_word_reader_agree_on_the_corpus(entry: dict[str, Any]) -> None:
    body = _short_message(entry)
    raw = (body.decode("latin-1") if isinstance(body, bytes) else body).replace("\x00", "")
    assert _text_fields(raw) == _text_fields_by_words(raw)


@settings(max_examples=500)
@given(
    values=st.lists(_TOKEN, min_size=7, max_size=7),
    text_key=st.sampled_from(["text:", "Text:", "TEXT:", "text :"]),
    text=st.text(alphabet=st.characters(codec="latin-1"), max_size=25),
)
def test_fast_path_and_word_reader_agree_on_generated_receipts(
    values: list[str], text_key: str, text: str
) -> None:
    message_id, sub, dlvrd, submit_date, done_date, stat, err = values
    raw = (
        f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date}"
        f" done date:{done_date} stat:{stat} err:{err} {text_key}{text}"
    )
    assert _text_fields(raw) == _text_fields_by_words(raw)
    if text_key in ("text:", "Text:"):
        assert _CANONICAL.fullmatch(raw) is not None  # the fast path was taken
