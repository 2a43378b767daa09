"""What the acoustic second look (`audio.name_look`) listens for in a line whose transcript names nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from conversation.addressing import NameMatcher, members_called, resolve_names
from conversation.line_shape import is_backchannel, looks_like_question
from conversation.text_words import words
from conversation.vocative import question_after_head

LONE_CALL_WORDS = 2  # a line this short may be a call alone (its own segment before the words that follow)
LISTEN_ALIAS_MIN_LETTERS = 5  # shorter aliases ("Cap", "Trix") are too like other short words to listen for


@dataclass(frozen=True)
class NameQuery:
    """What the acoustic look (`audio.name_look`) listens for in a line: the bot's name and its longer aliases,
    weighed against the names of the others present. `named`: the text already calls the bot (no look needed;
    a transcript Whisper doubted is kept for it). `question`: the line asks something, or is a word or two said
    alone (a call before a pause: "Please." for "Grace, <pause> did you…"), so a member's name the look hears is
    put back too (the question is theirs, not the room's)."""

    names: tuple[str, ...]
    others: tuple[str, ...]
    named: bool = False
    question: bool = False  # the line asks something: the name the look finds may be a member's (whose it is)
    call_alone: bool = False  # a word or two: maybe a call said alone before a pause (the name in place of it all)
    asked: str | None = None  # the line from a question opener after a short head (the name may stand for the head)


def names_to_listen_for(
    text: str, bot: NameMatcher, bot_name: str, bot_aliases: Sequence[str], members: Sequence[tuple[int, str]]
) -> NameQuery | None:
    """The look's question for a line; None when its text calls a member or mentions the bot (it is no call
    to the bot that the look could find). A member only talked about ("What did Alice want to cook?") leaves
    the line open: the call Whisper lost may be the bot's."""
    said = resolve_names(text, bot, members)
    if (said.bot_mentioned and not said.bot) or members_called(text, bot, members):
        return None
    others = tuple(name for _uid, name in members)
    taken = {w for name in others for w in words(name)}  # a member's name is theirs, not an alias to listen for
    names = (
        bot_name,
        *(
            a
            for a in bot_aliases
            if len(a) >= LISTEN_ALIAS_MIN_LETTERS and a != bot_name and "".join(words(a)) not in taken
        ),
    )
    # a call said alone before a pause is someone's too; "Yeah.", "Mm-hm." call nobody (and are the commonest short
    # lines: three members' names cost the look ~100 ms more CPU on each, measured 150-215 vs 55-85 ms)
    call_alone = len(words(text)) <= LONE_CALL_WORDS
    return NameQuery(
        tuple(dict.fromkeys(names)),
        others,
        named=said.bot,
        question=looks_like_question(text) or (call_alone and not is_backchannel(text)),
        call_alone=call_alone,
        asked=question_after_head(text),
    )
