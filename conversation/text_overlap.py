"""How much of a text copies another, word by word and in order.

One measure for two jobs: a member's transcript that is the bot's own voice picked up by a
microphone (`bot.voice_session`), and a reply sentence in which the LLM reads its instructions
aloud (`brain.screen.ReplyScreen`).
"""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence

from conversation.text_words import words


def copied_words(said: Sequence[str], ref: Sequence[str], *, min_run: int = 1) -> int:
    """Words of `said` found in `ref` in the same order, counting only runs of `min_run`+ consecutive words."""
    if not said or not ref:
        return 0
    matcher = difflib.SequenceMatcher(a=list(said), b=list(ref), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks() if block.size >= min_run)


def copies(text: str, refs: Iterable[str], *, min_share: float, min_words: int, min_run: int = 1) -> bool:
    """Whether `text` has at least `min_words` words and `min_share` of them copy one of `refs` in order."""
    said = words(text)
    if not said or len(said) < min_words:
        return False
    return words_copy(said, refs, min_share=min_share, min_run=min_run)


def words_copy(said: Sequence[str], refs: Iterable[str], *, min_share: float, min_run: int = 1) -> bool:
    """Whether `min_share` of the words `said` copy one of `refs` in order (`copies` on words already split)."""
    return any(copied_words(said, words(ref), min_run=min_run) >= min_share * len(said) for ref in refs)
