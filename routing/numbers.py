"""Destination numbers: normalisation to E.164 and the operator (MNO) of a number.

Owns: turning raw input into E.164 with `phonenumbers` (refusing invalid input with a typed
`InvalidNumber`), and the MNO decision in a fixed order: ported numbers, then the operator's
prefix table, then the carrier data phonenumbers ships, else unknown. Holds the current
`OperatorTables` and swaps it atomically on reload.
Must never: import `phonenumbers.geocoder` (about 100 MB of data), or do I/O except in
`from_config`/`reload`, which are blocking and belong off the event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers
from phonenumbers import carrier

from routing.config import NumberingConfig
from routing.errors import InvalidNumber, InvalidNumberCode
from routing.tables import (
    UNKNOWN_OPERATOR,
    MnoAnswer,
    MnoSource,
    OperatorTables,
    load_operator_tables,
)

_NON_GEOGRAPHIC = {"001", "ZZ"}

_PARSE_ERRORS: dict[int, tuple[InvalidNumberCode, str]] = {
    phonenumbers.NumberParseException.NOT_A_NUMBER: (
        InvalidNumberCode.NOT_A_NUMBER,
        "is not a phone number",
    ),
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: (
        InvalidNumberCode.TOO_SHORT,
        "is too short after the international prefix",
    ),
    phonenumbers.NumberParseException.TOO_SHORT_NSN: (
        InvalidNumberCode.TOO_SHORT,
        "is too short to be a phone number",
    ),
    phonenumbers.NumberParseException.TOO_LONG: (
        InvalidNumberCode.TOO_LONG,
        "is too long to be a phone number",
    ),
}

_POSSIBILITY_ERRORS: dict[int, tuple[InvalidNumberCode, str]] = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: (
        InvalidNumberCode.INVALID_COUNTRY_CODE,
        "has a country code that does not exist",
    ),
    phonenumbers.ValidationResult.TOO_SHORT: (
        InvalidNumberCode.TOO_SHORT,
        "is too short for its country",
    ),
    phonenumbers.ValidationResult.TOO_LONG: (
        InvalidNumberCode.TOO_LONG,
        "is too long for its country",
    ),
    phonenumbers.ValidationResult.INVALID_LENGTH: (
        InvalidNumberCode.NOT_POSSIBLE,
        "has a length no number in its country has",
    ),
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: (
        InvalidNumberCode.NOT_POSSIBLE,
        "is a local number; it needs an area code",
    ),
}


@dataclass(frozen=True, slots=True)
class NormalisedNumber:
    """A destination in E.164 (`+447911123456`) with its ISO region (None if non-geographic)."""

    e164: str
    region: str | None
    parsed: phonenumbers.PhoneNumber


@dataclass(frozen=True, slots=True)
class ResolvedNumber:
    """A normalised destination with its country and operator; `operator.source` says who
    decided. `country` is the prefix row's country when it gives one, else the number's region."""

    e164: str
    country: str | None
    operator: MnoAnswer

    @property
    def mno(self) -> str | None:
        return self.operator.mno

    @property
    def mno_source(self) -> MnoSource:
        return self.operator.source


def normalise_number(
    raw: str,
    *,
    default_region: str | None = None,
    accept: Literal["valid", "possible"] = "valid",
    assume_international: bool = False,
) -> NormalisedNumber:
    """E.164 of `raw`, or `InvalidNumber` with a code and a sentence saying why.

    `default_region` reads national input ('07911 123456' with 'GB'); `assume_international`
    reads bare digits as international (SMPP TON=1 addresses carry no '+').
    """
    text = raw.strip()
    if assume_international and text and not text.startswith("+"):
        text = "+" + text
    if not text:
        raise InvalidNumber(
            raw, InvalidNumberCode.NOT_A_NUMBER, f"The destination {raw!r} is empty."
        )
    canonical = _canonical_e164_parts(text)
    try:
        if canonical is not None:
            parsed = phonenumbers.PhoneNumber(
                country_code=canonical[0], national_number=int(canonical[1])
            )
        else:
            parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if not text.startswith("+") and default_region is None:
                raise InvalidNumber(
                    raw,
                    InvalidNumberCode.MISSING_COUNTRY,
                    f"The destination {raw!r} has no country code (+...) and no default "
                    "region is configured.",
                ) from exc
            raise InvalidNumber(
                raw,
                InvalidNumberCode.INVALID_COUNTRY_CODE,
                f"The destination {raw!r} has a country code that does not exist.",
            ) from exc
        code, why = _PARSE_ERRORS.get(
            exc.error_type, (InvalidNumberCode.NOT_A_NUMBER, "is not a phone number")
        )
        raise InvalidNumber(raw, code, f"The destination {raw!r} {why}.") from exc
    if canonical is not None:
        country_code, national = canonical
        possibility = _possibility(country_code, national, parsed)
    else:
        country_code = parsed.country_code or 0
        national = phonenumbers.national_significant_number(parsed)
        possibility = phonenumbers.is_possible_number_with_reason(parsed)
    if possibility != phonenumbers.ValidationResult.IS_POSSIBLE:
        code, why = _POSSIBILITY_ERRORS.get(
            possibility, (InvalidNumberCode.NOT_POSSIBLE, "is not a possible number")
        )
        raise InvalidNumber(raw, code, f"The destination {raw!r} {why}.")
    region, valid = _region_and_validity(country_code, national)
    if accept == "valid" and not valid:
        raise InvalidNumber(
            raw,
            InvalidNumberCode.NOT_ALLOCATED,
            f"The destination {raw!r} is not in any allocated number range of its country.",
        )
    if canonical is not None:
        e164 = text  # what format_number gives back: '+', the calling code, no leading zero
    else:
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return NormalisedNumber(e164, None if region in _NON_GEOGRAPHIC else region, parsed)


# phonenumbers' own validity check calls a Python function per number type (ten of them, each
# with its own regular expression), and for a calling code that several regions share (+1,
# +44, +7, ...) it does so for each candidate region: 20-30 us a number. The same metadata
# compiled into one expression per region and length gives the same answer in 2-3 us
# (tests/test_routing_numbers.py compares the two on random and example numbers).
_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


class _RegionPatterns:
    """One region's number plan as `region_and_validity` needs it."""

    __slots__ = ("by_length", "general", "general_lengths", "leading_digits", "region", "typed")

    def __init__(self, region: str, metadata: Any) -> None:
        self.region = region
        leading = metadata.leading_digits
        self.leading_digits = re.compile(leading) if leading is not None else None
        general = metadata.general_desc
        pattern = None if general is None else general.national_number_pattern
        self.general = re.compile(pattern) if pattern else None
        self.general_lengths = frozenset(general.possible_length) if general is not None else None
        # (lengths it admits, or None for any; pattern) per type that can make a number valid.
        names = list(_TYPE_DESCS)
        if not metadata.same_mobile_and_fixed_line_pattern:
            names.append("mobile")  # else phonenumbers never looks at it (same pattern)
        typed: list[tuple[frozenset[int] | None, str]] = []
        for name in names:
            desc = getattr(metadata, name)
            if desc is None or not desc.national_number_pattern:
                continue
            lengths = frozenset(desc.possible_length) if desc.possible_length else None
            typed.append((lengths, desc.national_number_pattern))
        self.typed = typed
        self.by_length: dict[int, re.Pattern[str] | None] = {}

    def _typed_for(self, length: int) -> re.Pattern[str] | None:
        patterns = [p for lengths, p in self.typed if lengths is None or length in lengths]
        union = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.by_length[length] = union
        return union

    def is_valid(self, national: str) -> bool:
        """phonenumbers' `number type != UNKNOWN` for this region's metadata."""
        length = len(national)
        if self.general is None or (self.general_lengths and length not in self.general_lengths):
            return False
        if self.general.fullmatch(national) is None:
            return False
        try:
            typed = self.by_length[length]
        except KeyError:
            typed = self._typed_for(length)
        return typed is not None and typed.fullmatch(national) is not None


_REGION_PATTERNS: dict[int, tuple[_RegionPatterns, ...]] = {}


def _region_patterns(country_code: int) -> tuple[_RegionPatterns, ...]:
    try:
        return _REGION_PATTERNS[country_code]
    except KeyError:
        pass
    compiled = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, region
        )
        if metadata is not None:
            compiled.append(_RegionPatterns(region, metadata))
    result = tuple(compiled)
    _REGION_PATTERNS[country_code] = result
    return result


def region_and_validity(parsed: phonenumbers.PhoneNumber) -> tuple[str | None, bool]:
    """The number's region and whether it is valid there: what `region_code_for_number` and
    `is_valid_number_for_region` answer together, at a tenth of their cost."""
    return _region_and_validity(
        parsed.country_code or 0, phonenumbers.national_significant_number(parsed)
    )


def _region_and_validity(country_code: int, national: str) -> tuple[str | None, bool]:
    regions = _region_patterns(country_code)
    if not regions:
        return None, False
    if len(regions) == 1:
        return regions[0].region, regions[0].is_valid(national)
    # A shared calling code: the first region whose leading digits match, or else whose
    # number plan admits the number (phonenumbers' own order).
    for candidate in regions:
        if candidate.leading_digits is not None:
            if candidate.leading_digits.match(national):
                return candidate.region, candidate.is_valid(national)
        elif candidate.is_valid(national):
            return candidate.region, True
    return None, False


_NATIONAL_PREFIX_PATTERNS: dict[int, re.Pattern[str] | None] = {}


def _national_prefix_pattern(country_code: int) -> re.Pattern[str] | None:
    try:
        return _NATIONAL_PREFIX_PATTERNS[country_code]
    except KeyError:
        pass
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    prefix = None if metadata is None else metadata.national_prefix_for_parsing
    pattern = re.compile(prefix) if prefix else None
    _NATIONAL_PREFIX_PATTERNS[country_code] = pattern
    return pattern


# phonenumbers' possibility check looks at nothing but the calling code and the length of the
# national significant number (its leading zeros aside, which the canonical parse never keeps):
# one answer per pair, kept, saves its metadata walk on every message.
_POSSIBILITY: dict[tuple[int, int], int] = {}


def _possibility(country_code: int, national: str, parsed: phonenumbers.PhoneNumber) -> int:
    key = (country_code, len(national))
    try:
        return _POSSIBILITY[key]
    except KeyError:
        pass
    answer = int(phonenumbers.is_possible_number_with_reason(parsed))
    if len(_POSSIBILITY) < 10_000:  # bounded by calling codes x lengths (a few thousand)
        _POSSIBILITY[key] = answer
    return answer


def _parse_canonical_e164(text: str) -> phonenumbers.PhoneNumber | None:
    """`phonenumbers.parse` for input already in E.164 form ('+' and digits), at a fraction
    of its cost; None hands anything less plain to the full parser.

    For such input the full parser only splits off the calling code, then strips a national
    prefix or keeps a leading zero when the metadata says so: wherever either could apply,
    this returns None, so the result is always the one `phonenumbers.parse` gives
    (tests/test_routing_fast_parse.py compares the two).
    """
    parts = _canonical_e164_parts(text)
    if parts is None:
        return None
    return phonenumbers.PhoneNumber(country_code=parts[0], national_number=int(parts[1]))


def _canonical_e164_parts(text: str) -> tuple[int, str] | None:
    """(calling code, national significant number) of `text` where `_parse_canonical_e164`
    would parse it, else None."""
    digits = text[1:]
    if text[:1] != "+" or not digits.isdigit() or not digits.isascii() or len(digits) > 17:
        return None
    for length in (1, 2, 3):
        country_code = int(digits[:length])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[length:]
    if len(national) < 2 or national[0] == "0":
        return None
    pattern = _national_prefix_pattern(country_code)
    if pattern is not None and pattern.match(national):
        return None
    return country_code, national


class NumberResolver:
    """Normalises destinations and decides their operator from the current tables.

    `swap_tables`/`reload` replace the tables with one reference assignment: a lookup reads
    the reference once, so it sees either the old pair of tables or the new one, never a mix.
    """

    def __init__(
        self, config: NumberingConfig | None = None, tables: OperatorTables | None = None
    ) -> None:
        self.config = config if config is not None else NumberingConfig()
        self._tables = tables if tables is not None else OperatorTables.empty()
        self._numbering_plan_answers: dict[str, MnoAnswer] = {}

    @classmethod
    def from_config(cls, config: NumberingConfig) -> NumberResolver:
        """Load the files named in `config` (blocking)."""
        return cls(config, load_operator_tables(config.prefix_file, config.mnp_file))

    @property
    def tables(self) -> OperatorTables:
        return self._tables

    def swap_tables(self, tables: OperatorTables) -> OperatorTables:
        """Install `tables`; returns the previous ones."""
        previous, self._tables = self._tables, tables
        return previous

    def reload(self) -> OperatorTables:
        """Re-read the configured files (blocking) and swap them in; on any error the current
        tables stay in place and the error propagates."""
        tables = load_operator_tables(self.config.prefix_file, self.config.mnp_file)
        self.swap_tables(tables)
        return tables

    def normalise(
        self, raw: str, *, region: str | None = None, assume_international: bool = False
    ) -> NormalisedNumber:
        return normalise_number(
            raw,
            default_region=region if region is not None else self.config.default_region,
            accept=self.config.accept,
            assume_international=assume_international,
        )

    def operator_of(self, number: NormalisedNumber) -> MnoAnswer:
        answer = self._tables.lookup(number.e164)
        if answer is not None:
            return answer
        return self._from_numbering_plan(number.parsed)

    def operator_of_e164(self, e164: str) -> MnoAnswer:
        """Operator of an already-normalised E.164 string (the fast path: no parsing unless
        the tables do not know the number)."""
        answer = self._tables.lookup(e164)
        if answer is not None:
            return answer
        return self._from_numbering_plan(phonenumbers.parse(e164, None))

    def resolve(
        self,
        raw: str,
        *,
        region: str | None = None,
        assume_international: bool = False,
        numbering_plan: bool = True,
    ) -> ResolvedNumber:
        """Normalise and find the operator; raises `InvalidNumber`.

        `numbering_plan=False` skips phonenumbers' carrier data (about half the cost of a
        resolve) when the operator tables do not know the number: for callers whose routes
        never match on the operator.
        """
        number = self.normalise(raw, region=region, assume_international=assume_international)
        if numbering_plan:
            operator = self.operator_of(number)
        else:
            operator = self._tables.lookup(number.e164) or UNKNOWN_OPERATOR
        country = operator.country if operator.country is not None else number.region
        return ResolvedNumber(number.e164, country, operator)

    def _from_numbering_plan(self, parsed: phonenumbers.PhoneNumber) -> MnoAnswer:
        name = carrier.name_for_number(parsed, "en")
        if not name:
            return UNKNOWN_OPERATOR
        answer = self._numbering_plan_answers.get(name)
        if answer is None:
            answer = MnoAnswer(name, MnoSource.NUMBERING_PLAN)
            self._numbering_plan_answers[name] = answer
        return answer
