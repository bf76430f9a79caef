"""The keyword matcher: does an MO's text say STOP, START or HELP?

Owns `KeywordClass`, `KeywordRule` (words of one class, optionally for some senders or sender
groups only, in one language, valid between two instants), `KeywordMatch` (what matched) and
`KeywordMatcher`, a pure function of (text, sender, its group, now). Never does: I/O, clocks,
config parsing, or changing anything (the registry records opt-outs, the inbound handler
replies).

Matching: the text is NFKC-normalised (full-width and compatibility letters become plain ones)
and case-folded. A keyword matches when the text, with everything but letters and digits
removed, is the keyword with the same removed: "Stop.", "  stop!!", "STOP 🛑", "Opt-Out" and
"opt out" all match, "stop it" does not. With `lenient`, a text of at most `lenient_max_words`
words that contains an opt-out word as one of its words (or a multi-word opt-out keyword as
consecutive words) is an opt-out too, and the match says it was lenient: "please stop", "stop
texting me". Leniency never applies to opt-in or help words: a stray "yes" or "info" in a
sentence changes nothing.

When a word belongs to several rules, the first applicable rule wins, opt-out rules first,
then opt-in, then help, and within a class sender-specific rules before general ones, so a
sender's own words override the defaults.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Unicode general categories whose characters make up words; the rest (spaces, punctuation,
# symbols such as emoji, format characters such as the zero-width joiner) separate them.
_WORD_CATEGORIES = frozenset("LN")


class KeywordClass(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


# Precedence when one word is in several classes: opting out must never lose.
_CLASS_ORDER = {KeywordClass.OPT_OUT: 0, KeywordClass.OPT_IN: 1, KeywordClass.HELP: 2}

DEFAULT_OPT_OUT = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
)
DEFAULT_OPT_IN = ("START", "YES", "UNSTOP")
DEFAULT_HELP = ("HELP", "INFO")
# Opt-out words that stop every sender, not only the one they were sent to.
DEFAULT_ALL_SENDERS = ("STOPALL",)
DEFAULT_LENIENT_MAX_WORDS = 4


@dataclass(frozen=True, slots=True)
class KeywordRule:
    """Words of one class. Empty `senders` and `sender_groups`: for every sender. Validity is
    [valid_from, valid_until) in unix seconds; None on either side is open."""

    keyword_class: KeywordClass
    words: tuple[str, ...]
    language: str
    senders: frozenset[str] = frozenset()  # as `gateway.optouts.senders.sender_key` spells them
    sender_groups: frozenset[str] = frozenset()
    valid_from: float | None = None
    valid_until: float | None = None
    all_senders: frozenset[str] = frozenset()  # of `words`, those that stop every sender

    @property
    def specific(self) -> bool:
        return bool(self.senders or self.sender_groups)

    def applies(self, sender: str, group: str | None, now: float) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        if self.valid_until is not None and now >= self.valid_until:
            return False
        if not self.specific:
            return True
        return sender in self.senders or (group is not None and group in self.sender_groups)


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    keyword_class: KeywordClass
    keyword: str  # the word as configured ("OPT OUT"), not as the subscriber typed it
    language: str
    lenient: bool = False  # matched inside a short sentence, not alone
    all_senders: bool = False  # an opt-out of every sender (STOPALL)


def compact(text: str) -> str:
    """NFKC, case-folded, letters and digits only: the form keywords are compared in."""
    return "".join(_word_characters(unicodedata.normalize("NFKC", text).casefold()))


def _word_characters(text: str) -> Iterable[str]:
    for char in text:
        if unicodedata.category(char)[0] in _WORD_CATEGORIES:
            yield char


def words_of(text: str) -> list[str]:
    """The words of a text (split at spaces), each in compact form; words with no letter or
    digit ("🛑", "!!", "-") are not words."""
    words = (compact(word) for word in unicodedata.normalize("NFKC", text).split())
    return [word for word in words if word]


@dataclass(frozen=True, slots=True)
class _Entry:
    rule: KeywordRule
    word: str  # as configured


class KeywordMatcher:
    """Text to `KeywordMatch` or None; see the module docstring for the rules."""

    __slots__ = ("_by_compact", "_opt_out_spans", "lenient", "lenient_max_words")

    def __init__(
        self,
        rules: Sequence[KeywordRule],
        *,
        lenient: bool = False,
        lenient_max_words: int = DEFAULT_LENIENT_MAX_WORDS,
    ) -> None:
        if lenient_max_words < 1:
            raise ValueError("lenient_max_words must be at least 1")
        self.lenient = lenient
        self.lenient_max_words = lenient_max_words
        ordered = sorted(
            rules, key=lambda rule: (_CLASS_ORDER[rule.keyword_class], not rule.specific)
        )
        self._by_compact: dict[str, list[_Entry]] = {}
        # Opt-out keywords by their number of words, for the lenient search.
        spans: set[int] = set()
        for rule in ordered:
            for word in rule.words:
                key = compact(word)
                if not key:
                    raise ValueError(f"keyword {word!r} has no letter or digit")
                self._by_compact.setdefault(key, []).append(_Entry(rule, word))
                if rule.keyword_class is KeywordClass.OPT_OUT:
                    spans.add(len(words_of(word)))
        self._opt_out_spans = tuple(sorted(spans))

    @classmethod
    def with_defaults(
        cls,
        extra: Sequence[KeywordRule] = (),
        *,
        language: str = "en",
        lenient: bool = False,
        lenient_max_words: int = DEFAULT_LENIENT_MAX_WORDS,
    ) -> KeywordMatcher:
        """The issue's default words in `language`, plus `extra` rules."""
        return cls(
            [*default_rules(language), *extra], lenient=lenient, lenient_max_words=lenient_max_words
        )

    def match(
        self, text: str, *, sender: str = "", group: str | None = None, now: float = 0.0
    ) -> KeywordMatch | None:
        """The keyword `text` is, for an MO sent to `sender` (in `group`) at `now` (unix
        seconds), or None. `sender` as `sender_key` spells it."""
        found = self._lookup(compact(text), sender, group, now)
        if found is not None:
            return _match(found, lenient=False)
        if not self.lenient:
            return None
        words = words_of(text)
        if not words or len(words) > self.lenient_max_words:
            return None
        for span in self._opt_out_spans:
            for start in range(len(words) - span + 1):
                found = self._lookup("".join(words[start : start + span]), sender, group, now)
                if found is not None and found.rule.keyword_class is KeywordClass.OPT_OUT:
                    return _match(found, lenient=True)
        return None

    def _lookup(self, key: str, sender: str, group: str | None, now: float) -> _Entry | None:
        entries = self._by_compact.get(key)
        if entries is None:
            return None
        for entry in entries:
            if entry.rule.applies(sender, group, now):
                return entry
        return None


def _match(entry: _Entry, *, lenient: bool) -> KeywordMatch:
    rule = entry.rule
    return KeywordMatch(
        keyword_class=rule.keyword_class,
        keyword=entry.word,
        language=rule.language,
        lenient=lenient,
        all_senders=entry.word in rule.all_senders,
    )


def default_rules(
    language: str = "en",
    *,
    opt_out: Sequence[str] = DEFAULT_OPT_OUT,
    opt_in: Sequence[str] = DEFAULT_OPT_IN,
    help_words: Sequence[str] = DEFAULT_HELP,
    all_senders: Sequence[str] = DEFAULT_ALL_SENDERS,
) -> list[KeywordRule]:
    """The general rules: one per class, for every sender, always valid."""
    return [
        KeywordRule(
            KeywordClass.OPT_OUT,
            tuple(opt_out),
            language,
            all_senders=frozenset(
                word for word in opt_out if compact(word) in _compacts(all_senders)
            ),
        ),
        KeywordRule(KeywordClass.OPT_IN, tuple(opt_in), language),
        KeywordRule(KeywordClass.HELP, tuple(help_words), language),
    ]


def _compacts(words: Iterable[str]) -> frozenset[str]:
    return frozenset(compact(word) for word in words)
