"""Operator tables: ported numbers (MNP) and the operator's prefix table, as one immutable object.

Owns: reading `msisdn,mno` and `prefix,mno[,country]` CSV files, and the O(digits) lookup of an
E.164 string in them. A loaded `OperatorTables` is never mutated; a reload builds a new one and
the resolver swaps its reference, so every lookup sees one consistent pair of tables.
Must never: parse numbers with phonenumbers (the caller normalises first), or run on the event
loop for a large file (loading is blocking; the caller moves it to a thread).

Memory layout (why): both tables key on the digits as an `int` (E.164 digits never start with
0, so distinct digit strings are distinct ints), which is ~half the size of a `str` key; values
are shared, interned `MnoAnswer` objects, so a million rows cost one pointer each. Prefixes of
every length live in one dict; a lookup divides the number by 10**k for each prefix length that
exists, longest first.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from routing.errors import TableFormatError

MAX_E164_DIGITS = 15
# phonenumbers accepts national numbers up to 17 digits; size the divisor index past that.
_LONGEST_PARSED_NUMBER = 20


class MnoSource(StrEnum):
    """Which source decided the operator of a number."""

    PORTED = "ported"
    PREFIX_TABLE = "prefix_table"
    NUMBERING_PLAN = "phonenumbers"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MnoAnswer:
    """The operator of a number and the source that decided it (`mno` is None when unknown)."""

    mno: str | None
    source: MnoSource
    country: str | None = None


UNKNOWN_OPERATOR = MnoAnswer(None, MnoSource.UNKNOWN)


@dataclass(frozen=True, slots=True)
class TableStats:
    prefixes: int
    ported: int
    duplicate_rows: int
    operators: int


class OperatorTables:
    """Immutable ported-number and prefix tables; `lookup` takes a normalised E.164 string."""

    __slots__ = ("_by_digit_count", "_ported", "_prefixes", "stats")

    def __init__(
        self,
        prefixes: dict[int, MnoAnswer],
        ported: dict[int, MnoAnswer],
        stats: TableStats,
        prefix_lengths: Iterable[int] | None = None,
    ) -> None:
        self._prefixes = prefixes
        self._ported = ported
        self.stats = stats
        if prefix_lengths is None:
            prefix_lengths = {len(str(prefix)) for prefix in prefixes}
        lengths = sorted(set(prefix_lengths), reverse=True)
        # For a number of n digits: the divisors that cut it to each prefix length, longest first.
        self._by_digit_count: tuple[tuple[int, ...], ...] = tuple(
            tuple(10 ** (digits - length) for length in lengths if length <= digits)
            for digits in range(_LONGEST_PARSED_NUMBER + 1)
        )

    @classmethod
    def empty(cls) -> OperatorTables:
        return cls({}, {}, TableStats(0, 0, 0, 0))

    @classmethod
    def from_rows(
        cls,
        prefix_rows: Iterable[tuple[str, str, str | None]] = (),
        ported_rows: Iterable[tuple[str, str]] = (),
    ) -> OperatorTables:
        """Build from in-memory rows (prefix, mno, country) and (msisdn, mno); '+' optional."""
        builder = _TableBuilder()
        for index, (prefix, mno, country) in enumerate(prefix_rows, start=1):
            builder.add_prefix("<rows>", index, prefix, mno, country)
        for index, (msisdn, mno) in enumerate(ported_rows, start=1):
            builder.add_ported("<rows>", index, msisdn, mno)
        return builder.build()

    def lookup(self, e164: str) -> MnoAnswer | None:
        """Ported table first, then the longest matching prefix; None when neither knows it."""
        number = int(e164)  # int() accepts the leading '+'
        answer = self._ported.get(number)
        if answer is not None:
            return answer
        prefixes = self._prefixes
        for divisor in self._by_digit_count[len(e164) - 1]:
            answer = prefixes.get(number // divisor)
            if answer is not None:
                return answer
        return None

    def matching_prefix(self, e164: str) -> str | None:
        """The prefix row that `lookup` would use (for explanations), ignoring ported numbers."""
        number = int(e164[1:])
        for divisor in self._by_digit_count[len(e164) - 1]:
            if number // divisor in self._prefixes:
                return "+" + str(number // divisor)
        return None

    def is_ported(self, e164: str) -> bool:
        return int(e164[1:]) in self._ported


def load_operator_tables(
    prefix_file: str | Path | None, mnp_file: str | Path | None
) -> OperatorTables:
    """Read both CSV files (blocking). Raises `TableFormatError` naming the file and line."""
    builder = _TableBuilder()
    if prefix_file is not None:
        path = str(prefix_file)
        if not _load_plain_file(path, MnoSource.PREFIX_TABLE, builder):
            builder.prefixes.clear()
            builder.prefix_lengths.clear()
            for line_number, row in _csv_rows(path):
                if len(row) not in (2, 3):
                    raise TableFormatError(path, line_number, "expected prefix,mno[,country]")
                country = row[2] if len(row) == 3 else None
                builder.add_prefix(path, line_number, row[0], row[1], country)
    if mnp_file is not None:
        path = str(mnp_file)
        if not _load_plain_file(path, MnoSource.PORTED, builder):
            builder.ported.clear()
            for line_number, row in _csv_rows(path):
                if len(row) != 2:
                    raise TableFormatError(path, line_number, "expected msisdn,mno")
                builder.add_ported(path, line_number, row[0], row[1])
    return builder.build()


# The fast path reads plain files (no quotes) a 1 MB block at a time, with regexes doing the
# per-line work in C: one pass takes the number of each row, one the text after its first comma,
# one counts comments and blank lines. Every line must be one of those (the counts prove it), and
# each distinct text after the comma is checked once when first seen (rows repeat a few hundred
# operator texts, interned to shared answers). Anything else sends the whole file to the csv
# path, which accepts quoted fields and names the bad line.
_ROW_NUMBER = re.compile(r"^[ \t]*\+?([1-9][0-9]{0,14})[ \t]*,", re.MULTILINE)
_ROW_REST = re.compile(r"^[^,\n#]*,([^\n]*)", re.MULTILINE)
_SKIP_LINE = re.compile(r"^[ \t]*(?:#[^\n]*)?\r?$", re.MULTILINE)
_NAME = r"[^,\s\"](?:[^,\n\"]*[^,\s\"])?"
_REST_OF_ROW = {
    MnoSource.PREFIX_TABLE: re.compile(
        rf"[ \t]*({_NAME})[ \t]*(?:,[ \t]*([A-Za-z]{{2}})?[ \t]*)?\r?"
    ),
    MnoSource.PORTED: re.compile(rf"[ \t]*({_NAME})[ \t]*()\r?"),
}
_BLOCK_CHARS = 1 << 20


class _NeedsCsvReader(Exception):
    pass


def _load_plain_file(path: str, source: MnoSource, builder: _TableBuilder) -> bool:
    """Fill the builder's table for `source` from `path`; False when the file needs the csv
    path (the table is then partly filled and must be cleared)."""
    table = builder.prefixes if source is MnoSource.PREFIX_TABLE else builder.ported
    answers = _AnswersByRowText(builder, source)
    rows = 0
    try:
        for block in _line_blocks(path):
            numbers = _ROW_NUMBER.findall(block)
            rests = _ROW_REST.findall(block)
            # `^` also starts the empty line after a final newline; it counts as a skip line.
            lines = block.count("\n") + 1
            # Matches are one per line at most, so equal counts mean every line matched.
            rows_expected = lines - len(_SKIP_LINE.findall(block))
            if not len(numbers) == len(rests) == rows_expected:
                return False
            rows += len(numbers)
            table.update(zip(map(int, numbers), map(answers.__getitem__, rests), strict=True))
            if source is MnoSource.PREFIX_TABLE:
                builder.prefix_lengths.update(map(len, numbers))
    except _NeedsCsvReader:
        return False
    builder.duplicates += rows - len(table)
    return True


class _AnswersByRowText(dict[str, MnoAnswer]):
    """Row text after the number ('Vodafone,GB') -> interned answer, checked on first sight."""

    def __init__(self, builder: _TableBuilder, source: MnoSource) -> None:
        super().__init__()
        self._builder = builder
        self._source = source
        self._shape = _REST_OF_ROW[source]

    def __missing__(self, text: str) -> MnoAnswer:
        parts = self._shape.fullmatch(text)
        if parts is None:
            raise _NeedsCsvReader(text)
        mno, country = parts.groups()
        region = country.upper() if country else None
        answer = self[text] = self._builder.answer(mno, region, self._source)
        return answer


def _line_blocks(path: str) -> Iterator[str]:
    """The file in blocks of whole lines, without a header line."""
    with open(path, newline="", encoding="utf-8") as handle:
        carry = ""
        first = True
        while True:
            data = handle.read(_BLOCK_CHARS)
            if not data:
                break
            block = carry + data
            cut = block.rfind("\n") + 1
            block, carry = block[:cut], block[cut:]
            if first and block:
                block = _without_header(block)
                first = False
            yield block
        if carry:
            yield _without_header(carry) if first else carry


def _without_header(block: str) -> str:
    end = block.find("\n")
    line = block if end < 0 else block[:end]
    first_field = line.split(",", 1)[0].strip().strip('"')
    if (
        first_field
        and not first_field.startswith("#")
        and not first_field.lstrip("+")[:1].isdigit()
    ):
        return "" if end < 0 else block[end + 1 :]
    return block


def _csv_rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """Rows without blanks and '#' comments; a first row that does not start with a digit is a
    header and is skipped."""
    with open(path, newline="", encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not any(field.strip() for field in row) or row[0].lstrip().startswith("#"):
                continue
            first = row[0].strip().lstrip("+")
            if line_number == 1 and not first[:1].isdigit():
                continue
            yield line_number, row


class _TableBuilder:
    def __init__(self) -> None:
        self.prefixes: dict[int, MnoAnswer] = {}
        self.ported: dict[int, MnoAnswer] = {}
        self.duplicates = 0
        self.prefix_lengths: set[int] = set()
        self._answers: dict[tuple[str, str | None, MnoSource], MnoAnswer] = {}

    def answer(self, mno: str, country: str | None, source: MnoSource) -> MnoAnswer:
        key = (mno, country, source)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = MnoAnswer(mno, source, country)
        return answer

    def add_prefix(
        self, path: str, line_number: int, prefix: str, mno: str, country: str | None
    ) -> None:
        digits = _digits(path, line_number, prefix, "prefix")
        operator = _operator(path, line_number, mno)
        region = None
        if country is not None and country.strip():
            region = country.strip().upper()
            if len(region) != 2 or not region.isascii() or not region.isalpha():
                raise TableFormatError(path, line_number, f"country {country!r} is not ISO 3166")
        if digits in self.prefixes:
            self.duplicates += 1
        self.prefixes[digits] = self.answer(operator, region, MnoSource.PREFIX_TABLE)
        self.prefix_lengths.add(len(str(digits)))

    def add_ported(self, path: str, line_number: int, msisdn: str, mno: str) -> None:
        digits = _digits(path, line_number, msisdn, "msisdn")
        if digits in self.ported:
            self.duplicates += 1
        self.ported[digits] = self.answer(_operator(path, line_number, mno), None, MnoSource.PORTED)

    def build(self) -> OperatorTables:
        operators = {answer.mno for answer in self._answers.values()}
        stats = TableStats(len(self.prefixes), len(self.ported), self.duplicates, len(operators))
        return OperatorTables(self.prefixes, self.ported, stats, self.prefix_lengths)


def _digits(path: str, line_number: int, field: str, what: str) -> int:
    text = field.strip()
    text = text.removeprefix("+")
    if (
        not text
        or len(text) > MAX_E164_DIGITS
        or not text.isascii()
        or not text.isdigit()
        or text[0] == "0"
    ):
        raise TableFormatError(
            path, line_number, f"{what} {field!r} is not 1-15 international digits"
        )
    return int(text)


def _operator(path: str, line_number: int, field: str) -> str:
    name = field.strip()
    if not name:
        raise TableFormatError(path, line_number, "empty operator name")
    return name
