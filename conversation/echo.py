"""The bot's own voice heard again: a member's microphone near their speakers sends the bot's words back.

Such a transcript is dropped before it reaches the room (the bot never answers itself), and the member is
marked `echo_prone`: their sound over the bot no longer pauses it.
"""

from __future__ import annotations

from typing import Iterable

from conversation.text_overlap import copies

# An echo begins while the bot's line plays (a microphone hears it as it is said) or this soon after its end
# (the member's client and the network delay it; the VAD starts a segment late). A member who says the same
# words later is repeating them: "What should I cook?" asked again after the bot's answer quoted it.
ECHO_LAG_S = 3.0
ECHO_MIN_WORDS = 3  # shorter lines ("yes", "okay") are too common to call an echo
ECHO_MATCH = 0.6  # share of the line's words found, in order, in the bot's recent words


def echoes(text: str, bot_texts: Iterable[str]) -> bool:
    """Whether `text` is mostly words the bot said (in order): ECHO_MATCH of at least ECHO_MIN_WORDS words."""
    return copies(text, bot_texts, min_share=ECHO_MATCH, min_words=ECHO_MIN_WORDS)
