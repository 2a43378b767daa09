"""Questions the rules ask of the room (`conversation.room.Room`): the last lines, who spoke lately, how quiet it is."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterator

from conversation.room_lines import BotState, RoomLine

if TYPE_CHECKING:
    from conversation.member import Member


class RoomReading:
    """Mixed into `Room`, which holds these attributes and keeps them current."""

    history: deque[RoomLine]
    members: dict[int, "Member"]
    started_at: float
    last_bot_line_t: float | None
    bot_state: BotState

    def speaking_members(self) -> list["Member"]:
        return [m for m in self.members.values() if m.speaking]

    def last_line(self) -> RoomLine | None:
        return self.history[-1] if self.history else None

    def last_bot_line(self) -> RoomLine | None:
        for line in reversed(self.history):
            if line.is_bot:
                return line
        return None

    def last_human_line(self) -> RoomLine | None:
        for line in reversed(self.history):
            if not line.is_bot:
                return line
        return None

    def line(self, seq: int | None) -> RoomLine | None:
        """History line `seq` (None when it is gone, or `seq` is None)."""
        if seq is None:
            return None
        return next((line for line in reversed(self.history) if line.seq == seq), None)

    def lines_before(self, seq: int) -> Iterator[RoomLine]:
        """Lines older than `seq`, newest first."""
        for line in reversed(self.history):
            if line.seq < seq:
                yield line

    def last_activity(self) -> float:
        """When anyone (human or bot) last spoke; the session start if nobody has."""
        times = [self.started_at]
        if self.history:
            times.append(self.history[-1].end)
        times.extend(m.last_speech_end for m in self.members.values() if m.last_speech_end is not None)
        if self.last_bot_line_t is not None:
            times.append(self.last_bot_line_t)
        return max(times)

    def bot_lines_in_a_row(self) -> int:
        """Bot lines at the end of the history with no human line after them."""
        n = 0
        for line in reversed(self.history):
            if not line.is_bot:
                break
            n += 1
        return n

    def since_member_spoke(self, user_id: int, now: float) -> float | None:
        member = self.members.get(user_id)
        if member is None:
            return None
        if member.speaking:
            return 0.0
        if member.last_speech_end is None:
            return None
        return now - member.last_speech_end

    def recent_speakers(self, now: float, window_s: float) -> list[int | None]:
        """Speaker of each line (None = bot) in the last `window_s`, oldest first."""
        out = []
        for line in reversed(self.history):
            if now - line.end > window_s:
                break
            out.append(line.user_id)
        return out[::-1]

    def describe(self, now: float) -> dict:
        """A small snapshot for logs and captions."""
        return {
            "members": {m.user_id: m.name for m in self.members.values()},
            "speaking": [m.name for m in self.speaking_members()],
            "bot": self.bot_state.value,
            "lines": len(self.history),
            "quiet_s": round(now - self.last_activity(), 2),
        }
