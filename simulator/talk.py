"""What simulated members say in the load and soak benchmarks: questions to the bot and remarks to each other.

Lines are drawn per guild with a seeded generator, so guilds hold different conversations and every run the
same ones. The bot is addressed by name in several ways ("Hey Juniper, ...", "Juniper, ...", "So Juniper,
..."); the remarks name nobody and need no answer.
"""

from __future__ import annotations

import random
from typing import Sequence

BOT_NAME = "Juniper"

QUESTIONS = (
    "Hey {bot}, what should I cook tonight?",
    "Hey {bot}, have you read any good books lately?",
    "{bot}, what is a good name for a cat?",
    "Hey {bot}, how do I keep basil alive on a windowsill?",
    "Hey {bot}, any ideas for a rainy Sunday?",
    "So {bot}, what kind of music do you like?",
    "{bot}, should I learn the guitar or the piano?",
    "Hey {bot}, what is your favourite season?",
    "Okay {bot}, what board game should we play tonight?",
    "Hey {bot}, do you think it will snow this winter?",
    "{bot}, what is the best way to learn a language?",
    "Hey {bot}, can you recommend a good movie?",
)
REMARKS = (
    "I think it might rain this weekend.",
    "My brother finally fixed his bike.",
    "The new bakery downtown is pretty good.",
    "I stayed up way too late last night.",
    "The traffic this morning was terrible.",
    "We should go hiking again soon.",
    "My cat knocked a plant off the shelf again.",
    "I started reading a new mystery novel.",
)


class LinePicker:
    """Successive lines of one room: about `question_share` of them questions to the bot, the rest remarks;
    a speaker never talks twice in a row (when someone else is there); each pool is used up before it repeats."""

    def __init__(self, rng: random.Random, *, bot: str = BOT_NAME, question_share: float = 0.67) -> None:
        self.rng = rng
        self.bot = bot
        self.question_share = question_share
        self._questions: list[str] = []
        self._remarks: list[str] = []
        self._last: str | None = None

    def next(self, names: Sequence[str], *, ask: bool | None = None) -> tuple[str, str, bool]:
        """(speaker, text, expect_reply) among `names`; `ask` forces a question (True) or a remark (False)."""
        rng = self.rng
        if ask is None:
            ask = rng.random() < self.question_share
        speaker = rng.choice([n for n in names if n != self._last] or list(names))
        self._last = speaker
        if ask:
            if not self._questions:
                self._questions = rng.sample(QUESTIONS, k=len(QUESTIONS))
            return speaker, self._questions.pop().format(bot=self.bot), True
        if not self._remarks:
            self._remarks = rng.sample(REMARKS, k=len(REMARKS))
        return speaker, self._remarks.pop(), False


def make_script(
    rng: random.Random, names: Sequence[str], lines: int, *, bot: str = BOT_NAME
) -> list[tuple[str, str, bool]]:
    """A room's `lines` lines (`LinePicker`); the first is a question (someone says hello to the bot)."""
    picker = LinePicker(rng, bot=bot)
    return [picker.next(names, ask=True if i == 0 else None) for i in range(lines)]
