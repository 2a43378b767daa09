"""The bot's own voice heard again: a member's microphone near their speakers sends the bot's words back.

Such a transcript is dropped before it reaches the room (the bot never answers itself), and the member is
marked `echo_prone`: their sound over the bot no longer pauses it.
"""

from __future__ import annotations

from typing import Iterable

from conversation.text_overlap import words_copy
from conversation.text_words import words

# An echo begins while the bot's line plays (a microphone hears it as it is said) or this soon after its end
# (the member's client and the network delay it; the VAD starts a segment late). A member who says the same
# words later is repeating them: "What should I cook?" asked again after the bot's answer quoted it.
ECHO_LAG_S = 3.0
ECHO_MIN_WORDS = 3  # shorter lines ("yes", "okay") are too common to call an echo
ECHO_MATCH = 0.6  # share of the line's words found, in order, in the bot's recent words
# Whisper, unsure of a voice (the bot's own, coming back through a speaker and a microphone), may loop a phrase:
# "Cherry blossoms Cherry blossoms Cherry blossoms Cherry". A phrase said LOOP_MIN_TIMES over, filling at least
# LOOP_MIN_WORDS words, is measured once; a person's "no, no, no" is too short to count as a loop.
LOOP_MIN_TIMES = 3
LOOP_MIN_WORDS = 6
LOOP_MAX_PHRASE = 8
ECHO_MIN_UNLOOPED_WORDS = 2  # one word looped ("no, no, no, no, no, no!") is a person's protest, never an echo


def echoes(text: str, bot_texts: Iterable[str]) -> bool:
    """Whether `text` is mostly words the bot said (in order): ECHO_MATCH of at least ECHO_MIN_WORDS words.

    The length counts every word heard; the share is measured on the words with Whisper's loops said once.
    """
    heard = words(text)
    if len(heard) < ECHO_MIN_WORDS:
        return False
    said = without_loops(heard)
    if len(said) < ECHO_MIN_UNLOOPED_WORDS:
        return False
    return words_copy(said, bot_texts, min_share=ECHO_MATCH)


def without_loops(said: list[str]) -> list[str]:
    """`said` with each looped phrase kept once (its cut-off last pass dropped)."""
    out: list[str] = []
    i = 0
    while i < len(said):
        loop = _loop_at(said, i)
        if loop is None:
            out.append(said[i])
            i += 1
        else:
            size, end = loop
            out.extend(said[i : i + size])
            i = end
    return out


def _loop_at(said: list[str], start: int) -> tuple[int, int] | None:
    """(phrase size, index past the loop) when a phrase starting at `start` loops; else None."""
    for size in range(1, LOOP_MAX_PHRASE + 1):
        phrase = said[start : start + size]
        if len(phrase) < size:
            return None
        end = start + size
        while said[end : end + size] == phrase:
            end += size
        if (end - start) // size >= LOOP_MIN_TIMES and end - start >= LOOP_MIN_WORDS:
            cut = next((k for k in range(size - 1, 0, -1) if said[end : end + k] == phrase[:k]), 0)
            return size, end + cut
    return None
