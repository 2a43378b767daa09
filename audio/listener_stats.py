"""What a listener counted: frames in and dropped, finals and how they came about, partials, gap fills, end-of-turn
calls and names put back (`Listener.stats`, in the session's metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ListenerStats:
    frames: int = 0
    ignored_own: int = 0
    dropped_overload: int = 0
    dropped_opted_out: int = 0  # frames refused, and transcripts withheld, of members who opted out
    bad_frames: int = 0
    finals: int = 0
    finals_rejected: int = 0
    finals_discarded: int = 0
    finals_duplicate: int = 0
    gap_fills: int = 0
    finals_from_speculation: int = 0
    partials: int = 0
    end_of_turn_calls: int = 0
    end_of_turn_ms_total: float = 0.0
    names_restored: int = 0  # finals whose name the second look put back (audio.name_look)
    member_names_restored: int = 0  # finals whose question the look found called to a member (their name put back)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
