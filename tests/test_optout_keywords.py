"""The keyword matcher: STOP/START/HELP in the shapes subscribers type them, per sender and
language, within validity dates, strict and lenient."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.optouts.keywords import (
    DEFAULT_HELP,
    DEFAULT_OPT_IN,
    DEFAULT_OPT_OUT,
    KeywordClass,
    KeywordMatcher,
    KeywordRule,
    compact,
)

JAN_2027 = 1_798_761_600.0  # 2027-01-01T00:00:00Z
FEB_2027 = 1_801_440_000.0

MATCHER = KeywordMatcher.with_defaults()
LENIENT = KeywordMatcher.with_defaults(lenient=True)

# Surroundings that must not stop a keyword matching: spaces, punctuation, emoji, ZWJ, VS16.
_DECORATION = st.text(
    alphabet=st.sampled_from(list(" \t\n.,!?;:-()'\"¡¿…“”🛑✋🙏🏽\u200d\ufe0f\u3000")), max_size=6
)
_ALL_DEFAULTS = (
    [(w, KeywordClass.OPT_OUT) for w in DEFAULT_OPT_OUT]
    + [(w, KeywordClass.OPT_IN) for w in DEFAULT_OPT_IN]
    + [(w, KeywordClass.HELP) for w in DEFAULT_HELP]
)


def _random_case(word: str, flips: list[bool]) -> str:
    return "".join(c.lower() if flips[i % len(flips)] else c.upper() for i, c in enumerate(word))


def _full_width(word: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" for c in word)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from(_ALL_DEFAULTS),
    st.lists(st.booleans(), min_size=1, max_size=8),
    _DECORATION,
    _DECORATION,
    st.booleans(),
)
def test_default_keyword_alone_matches_its_class_whatever_its_case_width_and_surroundings(
    entry: tuple[str, KeywordClass], flips: list[bool], before: str, after: str, wide: bool
) -> None:
    word, keyword_class = entry
    typed = _random_case(word, flips)
    if wide:
        typed = _full_width(typed)
    found = MATCHER.match(before + typed + after)
    assert found is not None
    assert found.keyword_class is keyword_class
    assert compact(found.keyword) == compact(word)
    assert not found.lenient


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=40))
def test_matching_is_total_and_a_match_is_a_configured_word(text: str) -> None:
    for matcher in (MATCHER, LENIENT):
        found = matcher.match(text)
        if found is not None:
            assert any(compact(found.keyword) == compact(w) for w, _ in _ALL_DEFAULTS)
            if found.lenient:
                assert found.keyword_class is KeywordClass.OPT_OUT


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=40))
def test_strict_match_implies_lenient_match_of_the_same_class(text: str) -> None:
    strict = MATCHER.match(text)
    if strict is not None:
        lenient = LENIENT.match(text)
        assert lenient is not None and lenient.keyword_class is strict.keyword_class
        assert not lenient.lenient


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=30))
def test_matching_depends_on_the_nfkc_form_only(text: str) -> None:
    assert MATCHER.match(text) == MATCHER.match(unicodedata.normalize("NFKC", text))
    assert LENIENT.match(text) == LENIENT.match(unicodedata.normalize("NFKC", text))


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.sampled_from(["please", "now", "me", "texting", "ok", "thanks"]), max_size=6),
    st.integers(min_value=0, max_value=6),
)
def test_lenient_finds_stop_in_short_sentences_only(filler: list[str], position: int) -> None:
    words = list(filler)
    words.insert(min(position, len(words)), "stop")
    found = LENIENT.match(" ".join(words) + "!")
    if len(words) <= 4:
        assert found is not None and found.keyword_class is KeywordClass.OPT_OUT
        assert found.lenient == (len(words) > 1)
    else:
        assert found is None
    if len(words) > 1:
        assert MATCHER.match(" ".join(words)) is None


@pytest.mark.parametrize(
    "text", ["Stop.", " stop!!", "STOP 🛑", "ＳＴＯＰ", "opt out", "Opt-Out", "OPTOUT", "s.t.o.p"]
)
def test_the_issues_examples_are_opt_outs(text: str) -> None:
    found = MATCHER.match(text)
    assert found is not None and found.keyword_class is KeywordClass.OPT_OUT


@pytest.mark.parametrize("text", ["stop it", "stopped", "nonstop", "please stop", "", "🛑", "top"])
def test_strict_matching_wants_the_keyword_alone(text: str) -> None:
    assert MATCHER.match(text) is None


def test_lenient_match_says_so_and_respects_the_word_limit() -> None:
    found = LENIENT.match("please stop texting me")
    assert found is not None and found.lenient and found.keyword == "STOP"
    assert LENIENT.match("please please stop texting me") is None
    three = KeywordMatcher.with_defaults(lenient=True, lenient_max_words=2)
    assert three.match("please stop texting") is None
    assert three.match("please stop") is not None


def test_lenient_never_turns_a_sentence_into_an_opt_in_or_help() -> None:
    assert LENIENT.match("yes please") is None
    assert LENIENT.match("more info please") is None


def test_multi_word_keyword_is_found_leniently() -> None:
    found = LENIENT.match("please opt out")
    assert found is not None and found.keyword_class is KeywordClass.OPT_OUT and found.lenient


def test_stopall_stops_every_sender_and_stop_does_not() -> None:
    found = MATCHER.match("stop all")
    assert found is not None and found.all_senders and found.keyword == "STOPALL"
    found = MATCHER.match("STOP")
    assert found is not None and not found.all_senders


def test_sender_words_apply_to_their_sender_or_group_only() -> None:
    french = KeywordRule(
        KeywordClass.OPT_OUT, ("ARRET", "ARRÊT"), "fr", senders=frozenset({"33612"})
    )
    spanish = KeywordRule(
        KeywordClass.OPT_OUT, ("BAJA",), "es", sender_groups=frozenset({"iberia"})
    )
    matcher = KeywordMatcher.with_defaults([french, spanish])
    found = matcher.match("Arrêt", sender="33612")
    assert found is not None and found.language == "fr" and found.keyword == "ARRÊT"
    assert matcher.match("arret", sender="44700") is None
    found = matcher.match("baja", sender="34600", group="iberia")
    assert found is not None and found.language == "es"
    assert matcher.match("baja", sender="34600") is None
    found = matcher.match("stop", sender="33612")
    assert found is not None and found.language == "en"


def test_a_dated_word_matches_only_between_its_dates() -> None:
    promo = KeywordRule(
        KeywordClass.OPT_OUT, ("PARAR",), "pt", valid_from=JAN_2027, valid_until=FEB_2027
    )
    matcher = KeywordMatcher.with_defaults([promo])
    assert matcher.match("parar", now=JAN_2027 - 1) is None
    assert matcher.match("parar", now=JAN_2027) is not None
    assert matcher.match("parar", now=FEB_2027 - 1) is not None
    assert matcher.match("parar", now=FEB_2027) is None


def test_a_sender_word_takes_precedence_and_opt_out_beats_other_classes() -> None:
    # A sender that made "END" a help word... opt-out still wins: never lose a STOP.
    odd = KeywordRule(KeywordClass.HELP, ("END",), "en", senders=frozenset({"12345"}))
    matcher = KeywordMatcher.with_defaults([odd])
    found = matcher.match("end", sender="12345")
    assert found is not None and found.keyword_class is KeywordClass.OPT_OUT
    french_in = KeywordRule(KeywordClass.OPT_IN, ("YES",), "fr", senders=frozenset({"12345"}))
    matcher = KeywordMatcher.with_defaults([french_in])
    found = matcher.match("yes", sender="12345")
    assert found is not None and found.language == "fr"


def test_a_keyword_without_letters_is_refused() -> None:
    with pytest.raises(ValueError):
        KeywordMatcher([KeywordRule(KeywordClass.HELP, ("?!",), "en")])
