"""The line the bot is preparing or speaking: what it says, how much was synthesized and heard, and what
members said over it meanwhile."""

from __future__ import annotations

from dataclasses import dataclass, field

from audio.types import Utterance
from conversation.decision import Action

# The session's opening lines, said as written: the spoken listening notice and the greeting. They open the floor
# to nobody: what members say next is their own talk, not an answer to the greeting's "What's up?"
OPENING_LINES = (Action.NOTICE.value, Action.GREET.value)


@dataclass(slots=True)
class BotTurn:
    """The line the bot is generating or speaking now.

    Text fragments and the seconds of audio synthesized for each are recorded, so that after a
    barge-in the words actually played (from the player's `seconds_played`) can be recovered.
    """

    kind: str  # the Decision action that started it
    started: float
    reply_to_seq: int | None = None  # the human line it answers
    basis_user_id: int | None = None  # preemptive start: whose partial it answers
    basis_text: str | None = None
    basis_finals: int = 0  # the basis member's `finals` count when the early start was made
    prev_responded_to_seq: int = 0  # restored if the line is discarded unheard
    preemptive: bool = False  # started on a partial transcript, or prepared during a wait: not confirmed yet
    prepared_seq: int | None = None  # prepared during the wait before answering this line (audio held until then)
    to_member: int | None = None  # a greeting to one member (who joined later): the line is for them
    confirmed_at: float | None = None
    speaking_since: float | None = None
    paused_since: float | None = None  # its voice is stopped while someone speaks over it
    ducked_since: float | None = None  # its voice is turned down while someone speaks briefly over it
    paused_for: set[int] = field(default_factory=set)  # who spoke over it since the duck or pause began
    pauses: int = 0
    said_over: dict[int, list[str]] = field(default_factory=dict)  # members' final words since the line began
    partial_over: dict[int, str] = field(default_factory=dict)  # and their words so far in the segment going on
    fragments: list[str] = field(default_factory=list)
    fragment_audio_s: list[float] = field(default_factory=list)

    @property
    def opening(self) -> bool:
        """The notice or the greeting (`OPENING_LINES`), not a line of the conversation."""
        return self.kind in OPENING_LINES

    def note_words(self, utt: Utterance) -> None:
        """A member's transcript of speech begun during this line (what they said over it)."""
        if utt.final:
            self.partial_over.pop(utt.user_id, None)
            if utt.text.strip():
                self.said_over.setdefault(utt.user_id, []).append(utt.text.strip())
        elif utt.text.strip():
            self.partial_over[utt.user_id] = utt.text.strip()

    def words_over(self, user_id: int) -> str:
        """Everything `user_id` said since this line began (finals, then the partial of the segment going on)."""
        words = list(self.said_over.get(user_id, ()))
        if user_id in self.partial_over:
            words.append(self.partial_over[user_id])
        return " ".join(words)

    def add_text(self, fragment: str) -> None:
        if fragment.strip():
            self.fragments.append(fragment.strip())
            self.fragment_audio_s.append(0.0)

    def add_audio(self, seconds: float) -> None:
        if not self.fragments:  # audio before any text: attribute to an unnamed fragment
            self.fragments.append("")
            self.fragment_audio_s.append(0.0)
        self.fragment_audio_s[-1] += seconds

    @property
    def text(self) -> str:
        return " ".join(f for f in self.fragments if f)

    @property
    def audio_s(self) -> float:
        return sum(self.fragment_audio_s)

    def heard_text(self, seconds_played: float) -> tuple[str, bool]:
        """(words the listeners actually heard, whether the line was cut short)."""
        heard: list[str] = []
        remaining = seconds_played
        for fragment, duration in zip(self.fragments, self.fragment_audio_s):
            if remaining >= duration - 1e-3:
                if fragment:
                    heard.append(fragment)
                remaining -= duration
                continue
            fragment_words = fragment.split()
            if duration > 0 and fragment_words:
                n = int(len(fragment_words) * max(0.0, remaining) / duration)
                if n:
                    heard.append(" ".join(fragment_words[:n]))
            return " ".join(heard), True
        return " ".join(heard), False
