"""The opt-out pieces built from the one config model: the keyword matcher and sender groups.

Never does: reading files or starting anything (`gateway.config` validated the values).
"""

from __future__ import annotations

from gateway.config import KeywordsConfig, SenderGroupConfig, TandemConfig
from gateway.optouts.keywords import KeywordClass, KeywordMatcher, KeywordRule, compact
from gateway.optouts.keywords import default_rules as _default_rules
from gateway.optouts.senders import SenderGroup, SenderGroups, sender_key


def sender_groups(groups: list[SenderGroupConfig]) -> SenderGroups:
    return SenderGroups.of(
        SenderGroup(
            group.name,
            frozenset(sender_key(sender) for sender in group.senders),
            shared_optout=group.optout_scope == "group",
        )
        for group in groups
    )


def keyword_matcher(keywords: KeywordsConfig) -> KeywordMatcher:
    """`[keywords]` as a matcher: the configured words of each class, then the extra ones."""
    all_senders = {compact(word) for word in keywords.all_senders}
    rules = _default_rules(
        keywords.language,
        opt_out=keywords.opt_out,
        opt_in=keywords.opt_in,
        help_words=keywords.help,
        all_senders=keywords.all_senders,
    )
    for extra in keywords.extra:
        words = tuple(extra.words)
        rules.append(
            KeywordRule(
                KeywordClass(extra.kind),
                words,
                extra.language or keywords.language,
                senders=frozenset(sender_key(sender) for sender in extra.senders),
                sender_groups=frozenset(extra.sender_groups),
                valid_from=_timestamp(extra.valid_from),
                valid_until=_timestamp(extra.valid_until),
                all_senders=frozenset(w for w in words if compact(w) in all_senders),
            )
        )
    return KeywordMatcher(
        rules, lenient=keywords.lenient, lenient_max_words=keywords.lenient_max_words
    )


def matcher_and_groups(config: TandemConfig) -> tuple[KeywordMatcher, SenderGroups]:
    return keyword_matcher(config.keywords), sender_groups(config.sender_groups)


def _timestamp(moment: object) -> float | None:
    import datetime

    if moment is None:
        return None
    assert isinstance(moment, datetime.datetime)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
