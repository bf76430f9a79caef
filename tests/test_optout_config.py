"""`[keywords]`, `[[sender_groups]]` and `[optouts]` in the one config model."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.optouts.from_config import matcher_and_groups
from gateway.optouts.keywords import KeywordClass

JAN_2027 = 1_798_761_600.0

CONFIG = """
[keywords]
lenient = true
lenient_max_words = 3

[[keywords.extra]]
kind = "opt_out"
words = ["ARRET", "ARRÊT"]
language = "fr"
sender_groups = ["france"]

[[keywords.extra]]
kind = "opt_out"
words = ["BAJA"]
language = "es"
senders = ["+34600"]
valid_from = 2027-01-01T00:00:00Z
valid_until = 2027-02-01T00:00:00

[[sender_groups]]
name = "france"
senders = ["33612", "Marque"]

[[sender_groups]]
name = "solo"
senders = ["777"]
optout_scope = "sender"

[optouts]
otp_exempt = ["Verify"]
"""


def test_keywords_and_groups_come_from_the_config() -> None:
    matcher, groups = matcher_and_groups(parse_config(CONFIG, "t.toml"))
    group = groups.group_of("marque")
    assert group is not None and group.name == "france" and group.shared_optout
    solo = groups.group_of("777")
    assert solo is not None and not solo.shared_optout
    found = matcher.match("arrêt!", sender="33612", group="france")
    assert found is not None and found.language == "fr"
    assert matcher.match("arret", sender="44700") is None
    assert matcher.match("baja", sender="34600", now=JAN_2027) is not None
    assert matcher.match("baja", sender="34600", now=JAN_2027 - 1) is None
    found = matcher.match("please stop now")
    assert found is not None and found.lenient and found.keyword_class is KeywordClass.OPT_OUT
    assert matcher.match("please stop it now") is None  # four words: over the limit of 3


def test_defaults_hold_the_issues_words() -> None:
    config = parse_config("", "t.toml")
    assert "OPT OUT" in config.keywords.opt_out and config.keywords.all_senders == ["STOPALL"]
    assert not config.keywords.lenient and config.keywords.lenient_max_words == 4
    assert all(a.optout_status == 0x65 for a in config.accounts)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[keywords]\nopt_in = ["STOP"]', "keywords.opt_in"),
        (
            '[[sender_groups]]\nname = "a"\nsenders = ["1"]\n'
            '[[sender_groups]]\nname = "b"\nsenders = ["+1"]',
            "sender_groups[1].senders",
        ),
        (
            '[[keywords.extra]]\nkind = "help"\nwords = ["AIDE"]\nsender_groups = ["nope"]',
            "keywords.extra[0].sender_groups",
        ),
        ('[[keywords.extra]]\nkind = "help"\nwords = ["!!"]', "keywords.extra.0.words"),
        (
            '[[keywords.extra]]\nkind = "help"\nwords = ["X"]\n'
            "valid_from = 2027-02-01T00:00:00Z\nvalid_until = 2027-01-01T00:00:00Z",
            "keywords.extra.0",
        ),
    ],
)
def test_bad_keyword_config_names_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    assert (
        caught.value.key.replace("[", ".")
        .replace("]", "")
        .startswith(key.replace("[", ".").replace("]", ""))
    ), caught.value
