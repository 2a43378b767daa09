"""The room's vocabulary: a line of the conversation, a member's departure, and the bot's state."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BotState(enum.Enum):
    IDLE = "idle"
    THINKING = "thinking"  # a reply is being generated, nothing heard yet
    SPEAKING = "speaking"  # audio of the reply is going out


@dataclass(frozen=True, slots=True)
class RoomLine:
    """One line of the conversation, human or bot, in order."""

    seq: int
    user_id: int | None  # None for the bot
    name: str
    text: str
    start: float
    end: float
    is_bot: bool
    interrupted: bool = False  # bot line cut by a barge-in (text is what was heard)
    overlapped_bot: bool = False  # human line that started while the bot was speaking
    end_of_turn: float | None = None  # human line: the end-of-turn probability of its last segment (None: not judged)
    addressee: int | None = None  # bot line: the member whose line it answered (or whom it greeted)
    opening: bool = False  # bot line: its notice or greeting (`bot_turn.OPENING_LINES`), no part of the talk


@dataclass(slots=True)
class Departure:
    user_id: int
    name: str
    t: float
    spoke: bool
    handled: bool = False
