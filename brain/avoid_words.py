"""Words a small model reaches for out of place, kept out of its reply unless the member's line calls for them.

SmolLM2-135M opens a third of its replies with an apology or a condolence whatever it was asked ("what
snacks should we bring?" → "I'm so sorry for your loss…"; docs/reply-quality.md). Its profile lists such
words (`Sampling.avoid_words`); the in-process backend gives their tokens a large negative logit bias, so
the model says something else. When the member's latest line brings sad news or an apology of their own,
sympathy is in place and nothing is avoided.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

# Sad news, trouble or an apology in the member's line: "sorry" back is what a person would say.
_SYMPATHY_CUE = re.compile(
    r"\b(?:sorry|apolog\w*|sad|sadly|unfortunately|died|dead|death|passed away|funeral|lost|loss|losing|miss(?:ed|ing)?|"
    r"sick|ill|illness|hospital|hurt|injur\w*|pain|broke|broken|fired|laid off|divorce\w*|break ?up|"
    r"cry\w*|cried|upset|lonely|depress\w*|anxious|stress\w*|worried|awful|terrible|horrible|worst|accident|"
    r"bad (?:day|news|week)|rough (?:day|week)|tough (?:day|week|time))\b",
    re.I,
)


def calls_for_sympathy(text: str) -> bool:
    """The line brings sad news, trouble or an apology."""
    return bool(_SYMPATHY_CUE.search(text))


def words_to_avoid(avoid: Sequence[str], latest_member_line: str) -> tuple[str, ...]:
    """`avoid`, unless the members' latest line calls for sympathy (then nothing)."""
    return () if not avoid or calls_for_sympathy(latest_member_line) else tuple(avoid)


def single_token_variants(words: Sequence[str], tokenize: Any) -> dict[int, float]:
    """A logit bias of -100 for each spelling of `words` that is one token ("sorry", " sorry", "Sorry",
    " Sorry"): banning the first piece of a word split in several would ban every word that starts so."""
    bias: dict[int, float] = {}
    for word in words:
        for variant in {word, " " + word, word.capitalize(), " " + word.capitalize()}:
            tokens = tokenize(variant)
            if len(tokens) == 1:
                bias[int(tokens[0])] = -100.0
    return bias
