"""Number normalisation and operator (MNO) resolution: MNP, prefix table, phonenumbers."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import carrier

from routing import (
    InvalidNumber,
    InvalidNumberCode,
    MnoSource,
    NumberingConfig,
    NumberResolver,
    OperatorTables,
    TableFormatError,
    load_operator_tables,
    normalise_number,
)
from routing import tables as tables_module

DATA = Path(__file__).parent / "data" / "routing"


@pytest.fixture
def resolver() -> NumberResolver:
    config = NumberingConfig(
        default_region="GB", prefix_file=DATA / "prefixes.csv", mnp_file=DATA / "ported.csv"
    )
    return NumberResolver.from_config(config)


# --- normalisation -------------------------------------------------------------------------


def test_international_input_is_normalised_to_e164() -> None:
    number = normalise_number("+44 (0)7400 123-456")
    assert number.e164 == "+447400123456"
    assert number.region == "GB"


def test_national_input_uses_the_default_region() -> None:
    assert normalise_number("07400 123456", default_region="GB").e164 == "+447400123456"
    assert normalise_number("06 12 34 56 78", default_region="FR").e164 == "+33612345678"


def test_national_input_without_a_default_region_is_refused_as_missing_country() -> None:
    with pytest.raises(InvalidNumber) as refused:
        normalise_number("07400 123456")
    assert refused.value.code == InvalidNumberCode.MISSING_COUNTRY
    assert "default region" in refused.value.reason


def test_resolver_default_region_comes_from_config_and_can_be_overridden_per_call() -> None:
    resolver = NumberResolver(NumberingConfig(default_region="FR"))
    assert resolver.normalise("0612345678").e164 == "+33612345678"
    assert resolver.normalise("07400123456", region="GB").e164 == "+447400123456"


def test_smpp_international_digits_without_plus_are_read_as_international() -> None:
    number = normalise_number("447400123456", assume_international=True)
    assert number.e164 == "+447400123456"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", InvalidNumberCode.NOT_A_NUMBER),
        ("hello", InvalidNumberCode.NOT_A_NUMBER),
        ("+999 1234567", InvalidNumberCode.INVALID_COUNTRY_CODE),
        ("+44 74", InvalidNumberCode.TOO_SHORT),
        ("+44 7400 1234567890", InvalidNumberCode.TOO_LONG),
        ("+1 202 555 0123 99", InvalidNumberCode.TOO_LONG),
    ],
)
def test_invalid_numbers_are_refused_with_a_machine_code_and_a_sentence(
    raw: str, code: InvalidNumberCode
) -> None:
    with pytest.raises(InvalidNumber) as refused:
        normalise_number(raw, default_region="GB")
    assert refused.value.code == code.value
    assert refused.value.raw == raw
    assert refused.value.reason.endswith(".")
    assert repr(raw) in refused.value.reason


def test_unallocated_range_is_refused_when_valid_numbers_are_required() -> None:
    # 07700 900xxx is reserved for drama: possible length, not allocated.
    with pytest.raises(InvalidNumber) as refused:
        normalise_number("+447700900123", accept="valid")
    assert refused.value.code == InvalidNumberCode.NOT_ALLOCATED
    assert normalise_number("+447700900123", accept="possible").e164 == "+447700900123"


# --- operator tables -----------------------------------------------------------------------


def test_longest_prefix_wins_among_overlapping_prefixes(resolver: NumberResolver) -> None:
    assert resolver.resolve("+447911123400").mno == "Island Mobile"  # 447911 over 4479
    assert resolver.resolve("+447956123456").mno == "Ninety Mobile"  # 4479 over 447
    assert resolver.resolve("+447400123456").mno == "UK Mobile"  # 447 over 44
    assert resolver.resolve("+447400123456").mno_source is MnoSource.PREFIX_TABLE


def test_prefix_row_country_is_the_country_when_given(resolver: NumberResolver) -> None:
    island = resolver.resolve("+447911123400")
    assert island.country == "GG"
    ninety = resolver.resolve("+447956123456")  # its row has an empty country column
    assert ninety.operator.country is None
    assert ninety.country == "GB"  # the number's own region


def test_ported_number_overrides_the_prefix_table(resolver: NumberResolver) -> None:
    ported = resolver.resolve("+447911123456")
    assert ported.mno == "Ninety Mobile"
    assert ported.mno_source is MnoSource.PORTED
    neighbour = resolver.resolve("+447911123457")
    assert neighbour.mno == "Island Mobile"


def test_number_outside_the_tables_falls_back_to_phonenumbers_carrier_data() -> None:
    resolver = NumberResolver(tables=OperatorTables.from_rows([("33", "France Default", "FR")]))
    german = resolver.resolve("+4915112345678")
    expected = carrier.name_for_number(phonenumbers.parse("+4915112345678"), "en")
    assert expected
    assert german.mno == expected
    assert german.mno_source is MnoSource.NUMBERING_PLAN


def test_number_unknown_everywhere_has_no_operator() -> None:
    resolver = NumberResolver()
    us_fixed_or_mobile = resolver.resolve("+12025550123")
    assert carrier.name_for_number(phonenumbers.parse("+12025550123"), "en") == ""
    assert us_fixed_or_mobile.mno is None
    assert us_fixed_or_mobile.mno_source is MnoSource.UNKNOWN
    assert us_fixed_or_mobile.country == "US"


def test_e164_fast_path_agrees_with_full_resolution(resolver: NumberResolver) -> None:
    for raw in ("+447911123456", "+447911123400", "+33612345678", "+4915112345678"):
        assert resolver.operator_of_e164(raw) == resolver.resolve(raw).operator


def test_loading_skips_header_comments_and_blank_lines_and_accepts_plus(tmp_path: Path) -> None:
    prefixes = tmp_path / "p.csv"
    prefixes.write_text("prefix,mno\n\n# comment\n+49151,Alpha\n4917,Beta,de\n")
    ported = tmp_path / "m.csv"
    ported.write_text("4917012345678,Alpha\n")
    tables = load_operator_tables(prefixes, ported)
    assert tables.stats.prefixes == 2
    assert tables.stats.ported == 1
    assert tables.lookup("+4915112345678") is not None
    beta = tables.lookup("+4917112345678")
    assert beta is not None and beta.mno == "Beta" and beta.country == "DE"
    alpha = tables.lookup("+4917012345678")
    assert alpha is not None and alpha.source is MnoSource.PORTED


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("+44,A\n+4x,B\n", 2, "international digits"),
        ("+44,A\n044,B\n", 2, "international digits"),
        ("+44\n", 1, "prefix,mno"),
        ("+44,A\n+45,\n", 2, "empty operator"),
        ("+44,A,GBR\n", 1, "ISO 3166"),
    ],
)
def test_bad_prefix_rows_are_reported_with_file_and_line(
    tmp_path: Path, content: str, line: int, problem: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableFormatError) as error:
        load_operator_tables(path, None)
    assert error.value.line_number == line
    assert problem in error.value.problem
    assert str(path) in str(error.value)


def test_quoted_csv_files_load_like_plain_ones(tmp_path: Path) -> None:
    plain = load_operator_tables(DATA / "prefixes.csv", DATA / "ported.csv")
    quoted_prefixes = tmp_path / "prefixes.csv"
    quoted_prefixes.write_text(
        '"+44","UK Default","GB"\r\n"+447","UK Mobile",GB\r\n4479,"Ninety Mobile"\r\n'
        '447911,Island Mobile,gg\r\n3361,"Paris Mobile",FR\r\n'
    )
    quoted_ported = tmp_path / "ported.csv"
    quoted_ported.write_text('"+447911123456","Ninety Mobile"\n33612345678,UK Mobile\n')
    quoted = load_operator_tables(quoted_prefixes, quoted_ported)
    assert quoted.stats == plain.stats
    for number in (
        "+447911123456",
        "+447911123400",
        "+447956123456",
        "+447400123456",
        "+441632960123",
        "+33612345678",
        "+33611111111",
        "+12025550123",
    ):
        assert quoted.lookup(number) == plain.lookup(number), number
        assert quoted.matching_prefix(number) == plain.matching_prefix(number)


_row = st.tuples(
    st.from_regex(r"[1-9][0-9]{0,9}", fullmatch=True),
    st.sampled_from(["Vodafone", "EE", "Three UK", "O2-UK", "Sure (GG)"]),
    st.sampled_from(["", "GB", "gg", None]),
    st.sampled_from(["", " ", "\t", "+", " +"]),  # leading text before the number
    st.sampled_from(["\n", "\r\n"]),
)
_extra_line = st.sampled_from(["", "# a comment, with commas", "  # indented", "   "])


@settings(max_examples=60)
@given(rows=st.lists(st.one_of(_row, _extra_line), max_size=30), header=st.booleans())
def test_fast_plain_loader_reads_exactly_what_the_csv_reader_reads(
    rows: list[tuple[str, str, str | None, str, str] | str], header: bool
) -> None:
    plain_lines = ["prefix,mno,country\n"] if header else []
    quoted_lines = list(plain_lines)
    for row in rows:
        if isinstance(row, str):
            plain_lines.append(row + "\n")
            quoted_lines.append(row + "\n")
            continue
        digits, mno, country, lead, end = row
        tail = "" if country is None else f",{country}"
        plain_lines.append(f"{lead}{digits}, {mno} {tail}{end}")
        quoted_tail = "" if country is None else f',"{country}"'
        quoted_lines.append(f'"{digits}","{mno}"{quoted_tail}{end}')
    with tempfile.TemporaryDirectory() as directory:
        plain, quoted = Path(directory, "plain.csv"), Path(directory, "quoted.csv")
        plain.write_text("".join(plain_lines), newline="")
        quoted.write_text("".join(quoted_lines), newline="")
        fast, slow = load_operator_tables(plain, None), load_operator_tables(quoted, None)
        # The plain rendering must really take the fast path (else this compares csv to csv).
        assert tables_module._load_plain_file(
            str(plain), MnoSource.PREFIX_TABLE, tables_module._TableBuilder()
        )
    assert fast.stats == slow.stats
    for row in rows:
        if not isinstance(row, str):
            number = "+" + row[0] + "12345"
            assert fast.lookup(number) == slow.lookup(number)


def test_operator_names_may_contain_commas_when_quoted(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('447,"Mobile, Inc.",GB\n')
    answer = load_operator_tables(path, None).lookup("+447400123456")
    assert answer is not None and answer.mno == "Mobile, Inc." and answer.country == "GB"


def test_a_bad_line_deep_in_a_large_file_is_reported_by_number(tmp_path: Path) -> None:
    path = tmp_path / "ported.csv"
    # 60,000 rows are ~1.4 MB: the bad row sits in the loader's second block.
    lines = [f"+4474{index:08d},Op{index % 7}" for index in range(60_000)]
    lines[50_000] = "+4474x,Op1"
    path.write_text("msisdn,mno\n" + "\n".join(lines) + "\n")
    with pytest.raises(TableFormatError) as error:
        load_operator_tables(None, path)
    assert error.value.line_number == 50_002
    del lines[50_000]
    path.write_text("msisdn,mno\n" + "\n".join(lines))  # no final newline
    tables = load_operator_tables(None, path)
    assert tables.stats.ported == 59_999
    assert tables.is_ported("+447400059999")


def test_duplicate_rows_are_counted_and_the_last_one_wins() -> None:
    tables = OperatorTables.from_rows([("44", "First", None), ("+44", "Second", None)])
    assert tables.stats.duplicate_rows == 1
    answer = tables.lookup("+447400123456")
    assert answer is not None and answer.mno == "Second"


@given(
    prefixes=st.dictionaries(
        st.from_regex(r"[1-9][0-9]{0,6}", fullmatch=True), st.sampled_from("ABCD"), max_size=40
    ),
    number=st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True),
)
def test_lookup_equals_brute_force_longest_prefix(prefixes: dict[str, str], number: str) -> None:
    tables = OperatorTables.from_rows([(p, mno, None) for p, mno in prefixes.items()])
    matching = [p for p in prefixes if number.startswith(p)]
    expected = prefixes[max(matching, key=len)] if matching else None
    answer = tables.lookup("+" + number)
    assert (answer.mno if answer is not None else None) == expected
    expected_prefix = "+" + max(matching, key=len) if matching else None
    assert tables.matching_prefix("+" + number) == expected_prefix


# --- reload --------------------------------------------------------------------------------


def test_reload_swaps_in_new_tables_and_a_bad_file_keeps_the_old_ones(tmp_path: Path) -> None:
    prefixes = tmp_path / "prefixes.csv"
    ported = tmp_path / "ported.csv"
    prefixes.write_text("447,Before\n")
    ported.write_text("")
    resolver = NumberResolver.from_config(NumberingConfig(prefix_file=prefixes, mnp_file=ported))
    assert resolver.resolve("+447400123456").mno == "Before"

    prefixes.write_text("447,After\n")
    ported.write_text("447400123456,Ported After\n")
    resolver.reload()
    assert resolver.resolve("+447400123456").mno == "Ported After"
    assert resolver.resolve("+447400123457").mno == "After"

    prefixes.write_text("447,Broken\nnot-a-prefix,X\n")
    with pytest.raises(TableFormatError):
        resolver.reload()
    assert resolver.resolve("+447400123457").mno == "After"


def test_a_lookup_during_swaps_sees_one_table_or_the_other_never_a_mix() -> None:
    # Old: the number is ported. New: it is not, and its prefix belongs to someone else.
    # Mixing new ported data with old prefix data would answer "Old Prefix".
    old = OperatorTables.from_rows([("447", "Old Prefix", None)], [("447400123456", "Old Port")])
    new = OperatorTables.from_rows([("447", "New Prefix", None)])
    resolver = NumberResolver(tables=old)
    stop = threading.Event()

    def swap_back_and_forth() -> None:
        while not stop.is_set():
            resolver.swap_tables(new)
            resolver.swap_tables(old)

    swapper = threading.Thread(target=swap_back_and_forth)
    swapper.start()
    try:
        seen = {resolver.operator_of_e164("+447400123456").mno for _ in range(20_000)}
    finally:
        stop.set()
        swapper.join()
    assert seen <= {"Old Port", "New Prefix"}
    assert resolver.swap_tables(new) is old


def test_routing_never_imports_the_phonenumbers_geocoder() -> None:
    code = (
        "import sys, routing\n"
        "r = routing.NumberResolver()\n"
        "r.resolve('+4915112345678')\n"
        "assert 'phonenumbers.geocoder' not in sys.modules, 'geocoder imported'\n"
        "assert 'phonenumbers.carrier' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
