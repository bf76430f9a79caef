"""The E.164 fast path of number normalisation agrees with phonenumbers' own parser."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import NumberResolver, RouteTable
from routing.config import RouteConfig
from routing.errors import InvalidNumber
from routing.numbers import _parse_canonical_e164, normalise_number, region_and_validity

CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@settings(max_examples=3000, deadline=None)
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


def _phonenumbers_normalise(text: str) -> tuple[str, bool] | None:
    """(E.164, valid) as phonenumbers alone answers it, or None where it is not possible."""
    parsed = phonenumbers.parse(text, None)
    if (
        phonenumbers.is_possible_number_with_reason(parsed)
        != phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.is_valid_number(parsed)


@settings(max_examples=3000, deadline=None)
@given(
    calling_code=st.sampled_from(CALLING_CODES),
    national=st.text(alphabet="0123456789", min_size=1, max_size=14),
)
def test_normalise_on_plain_e164_agrees_with_phonenumbers(calling_code: int, national: str) -> None:
    text = f"+{calling_code}{national}"
    try:
        expected = _phonenumbers_normalise(text)
    except phonenumbers.NumberParseException:
        expected = None
    try:
        number = normalise_number(text, accept="possible")
    except InvalidNumber:
        assert expected is None
        return
    assert expected is not None
    assert number.e164 == expected[0]
    assert number.parsed == phonenumbers.parse(text, None)
    try:
        normalise_number(text)
    except InvalidNumber:
        assert not expected[1]
    else:
        assert expected[1]


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


def _phonenumbers_region_and_validity(parsed: phonenumbers.PhoneNumber) -> tuple[str | None, bool]:
    region = phonenumbers.region_code_for_number(parsed)
    return region, region is not None and phonenumbers.is_valid_number_for_region(parsed, region)


@settings(max_examples=4000, deadline=None)
@given(
    calling_code=st.sampled_from(CALLING_CODES),
    national=st.text(alphabet="0123456789", min_size=2, max_size=15),
)
def test_region_and_validity_agree_with_phonenumbers_on_random_numbers(
    calling_code: int, national: str
) -> None:
    parsed = phonenumbers.PhoneNumber(country_code=calling_code, national_number=int(national))
    assert region_and_validity(parsed) == _phonenumbers_region_and_validity(parsed)


def _example_numbers() -> list[phonenumbers.PhoneNumber]:
    examples = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.VOIP,
        ):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is not None:
                examples.append(example)
    for calling_code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(calling_code)
        if example is not None:
            examples.append(example)
    return examples


EXAMPLES = _example_numbers()


def test_there_are_valid_examples_in_most_regions() -> None:
    valid = [n for n in EXAMPLES if region_and_validity(n)[1]]
    assert len(valid) > 500
    assert region_and_validity(phonenumbers.parse("+447400123456")) == ("GB", True)
    assert region_and_validity(phonenumbers.parse("+447911123456")) == ("GG", True)
    assert region_and_validity(phonenumbers.parse("+441624756789")) == ("IM", True)
    assert region_and_validity(phonenumbers.parse("+14165550123"))[0] == "CA"


@settings(max_examples=4000, deadline=None)
@given(
    example=st.sampled_from(EXAMPLES),
    keep=st.integers(min_value=1, max_value=8),
    tail=st.text(alphabet="0123456789", min_size=0, max_size=6),
)
def test_region_and_validity_agree_with_phonenumbers_near_real_numbers(
    example: phonenumbers.PhoneNumber, keep: int, tail: str
) -> None:
    # Real numbers with their ends changed: most stay valid, some change region or fall out
    # of every range, which exercises the shared calling codes' search.
    national = str(example.national_number)
    changed = national[: min(keep, len(national))] + tail
    parsed = phonenumbers.PhoneNumber(
        country_code=example.country_code, national_number=int(changed)
    )
    assert region_and_validity(parsed) == _phonenumbers_region_and_validity(parsed)
    assert region_and_validity(example) == _phonenumbers_region_and_validity(example)
