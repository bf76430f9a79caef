"""The E.164 fast path of number normalisation agrees with phonenumbers' own parser."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import NumberResolver, RouteTable
from routing.config import RouteConfig
from routing.numbers import _parse_canonical_e164

CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@settings(max_examples=3000)
@given(
    calling_code=st.sampled_from(CALLING_CODES),
    national=st.text(alphabet="0123456789", min_size=1, max_size=14),
)
def test_fast_parse_gives_what_phonenumbers_parse_gives(calling_code: int, national: str) -> None:
    text = f"+{calling_code}{national}"
    fast = _parse_canonical_e164(text)
    if fast is None:
        return  # handed to the full parser
    assert fast == phonenumbers.parse(text, None)


@pytest.mark.parametrize(
    "text",
    [
        "447911123456",
        "+44 7911 123456",
        "+4407911123456",
        "+39 06 1234 5678",
        "+390612345678",
        "+",
        "+1",
        "+٤٤٧٩١١١٢٣٤٥٦",
    ],
)
def test_fast_parse_leaves_anything_but_plain_e164_to_the_full_parser(text: str) -> None:
    assert _parse_canonical_e164(text) is None


def test_resolve_without_numbering_plan_keeps_table_operators_and_skips_carrier_data() -> None:
    resolver = NumberResolver()
    full = resolver.resolve("+447911123456")
    lean = resolver.resolve("+447911123456", numbering_plan=False)
    assert full.e164 == lean.e164 == "+447911123456"
    assert full.mno is not None
    assert lean.mno is None


def test_route_table_says_whether_any_route_matches_on_the_operator() -> None:
    plain = RouteConfig(name="all", priority=1, targets=["a"])
    by_mno = RouteConfig(name="vf", priority=2, mnos=["Vodafone"], targets=["a"])
    assert not RouteTable.from_config([plain]).matches_operator
    assert RouteTable.from_config([plain, by_mno]).matches_operator
