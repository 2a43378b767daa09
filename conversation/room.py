"""The room: what the prompter knows about one voice session, as plain data.

It is fed by events (members joining and leaving, SpeakingEvents, partial and final
Utterances, the bot's own progress) and read by the pure rules in `conversation.rules`.
Everything per member and the history are bounded, so an hour-long session stays small.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Iterable

from audio.types import SpeakingEvent, Utterance
from conversation.bot_turn import BotTurn
from conversation.member import Member
from conversation.room_lines import BotState, Departure, RoomLine
from conversation.room_reading import RoomReading

log = logging.getLogger(__name__)

MAX_HISTORY_LINES = 200
MAX_LINE_CHARS = 1200
MAX_DEPARTURES = 16
# Finals of one member closer than this are one turn: a member who stops mid-sentence and goes on within the
# prompter's wait after an unfinished line (PROMPTER_INCOMPLETE_WAIT_MS) is still saying the same thing.
MERGE_GAP_S = 2.0


class Room(RoomReading):
    """Conversation state of one voice session."""

    def __init__(
        self,
        *,
        bot_name: str,
        bot_user_id: int | None = None,
        now: float = 0.0,
        bot_aliases: Iterable[str] = (),
        max_history: int = MAX_HISTORY_LINES,
        merge_gap_s: float = MERGE_GAP_S,
    ) -> None:
        self.bot_name = bot_name
        self.merge_gap_s = merge_gap_s
        self.bot_aliases: tuple[str, ...] = tuple(bot_aliases)
        self.bot_user_id = bot_user_id
        self.started_at = now
        self.members: dict[int, Member] = {}
        self.history: deque[RoomLine] = deque(maxlen=max_history)
        self.departures: deque[Departure] = deque(maxlen=MAX_DEPARTURES)
        self.bot_state = BotState.IDLE
        self.turn: BotTurn | None = None
        self.last_bot_line_t: float | None = None  # end of the bot's last line
        self.last_bot_start_t: float | None = None  # the bot's voice last began a line of the talk (no opening line)
        self.responded_to_seq = 0  # human lines up to this seq have been answered (or given up on)
        self.cut_unheard_seq = 0  # the latest line whose reply was cut before a word of it was heard
        self.room_greeted = False
        self.notice_pending = False  # the spoken listening notice is still to be said (the session's first line)
        # (seq, text) of the lines a reply was prepared for during a wait: one try per wording of a line
        self.prepared: deque[tuple[int, str]] = deque(maxlen=16)
        self._seq = 0

    # --- members --------------------------------------------------------------------------
    def member_joined(self, user_id: int, name: str, t: float, *, initial: bool = False) -> Member:
        if user_id == self.bot_user_id:
            raise ValueError("the bot is not a member of its own room")
        member = self.members.get(user_id)
        if member is None:
            member = Member(user_id, name, t, initial=initial, greeted=initial)
            self.members[user_id] = member
            for departure in self.departures:  # back again: no farewell for them
                if departure.user_id == user_id:
                    departure.handled = True
        else:
            member.name = name
        return member

    def member_left(self, user_id: int, t: float) -> Departure | None:
        member = self.members.pop(user_id, None)
        if member is None:
            return None
        departure = Departure(user_id, member.name, t, spoke=member.lines > 0)
        self.departures.append(departure)
        return departure

    def rename(self, user_id: int, name: str) -> None:
        if user_id in self.members:
            self.members[user_id].name = name

    def forget_words(self, user_id: int, name: str) -> int:
        """A member opted out: their lines (and the bot's lines answering them) leave the history, their partial
        and speech state go, and they are called `name` from now on. Returns the lines removed."""
        kept = [ln for ln in self.history if ln.user_id != user_id and not (ln.is_bot and ln.addressee == user_id)]
        removed = len(self.history) - len(kept)
        self.history.clear()
        self.history.extend(kept)
        member = self.members.get(user_id)
        if member is not None:
            member.name = name
            member.partial = None
            member.last_final = None
            member.speaking_since = None
        for departure in self.departures:
            if departure.user_id == user_id:
                departure.name = name
        return removed

    def name_of(self, user_id: int) -> str:
        member = self.members.get(user_id)
        return member.name if member else f"member {user_id}"

    @property
    def humans(self) -> list[Member]:
        return list(self.members.values())

    # --- speech events ----------------------------------------------------------------------
    def on_speaking(self, event: SpeakingEvent) -> None:
        member = self._member_for_event(event.user_id, event.t)
        if member is None:
            return
        member.quiet_since = None
        if event.speaking:
            if member.speaking_since is None:
                member.speaking_since = event.t
                member.last_speech_start = event.t
        else:
            if member.speaking_since is not None:
                member.speech_spans.append((member.speaking_since, event.t))
            member.speaking_since = None
            member.last_speech_end = event.t

    def on_quiet(self, user_id: int, since: float | None) -> None:
        """The member's voice stopped at `since` within their speech (the VAD's pause: its end-of-speech silence
        runs), or came back (None). Their voice over the bot is counted without that silence."""
        member = self.members.get(user_id)
        if member is not None and member.speaking:
            member.quiet_since = since

    def on_utterance(self, utt: Utterance) -> RoomLine | None:
        """Record a partial (kept aside) or a final (a history line, merged into the speaker's turn)."""
        member = self._member_for_event(utt.user_id, utt.end, name=utt.name)
        if member is None:
            return None
        if self.turn is not None and utt.start >= self.turn.started - 0.05:
            self.turn.note_words(utt)
        if not utt.final:
            if utt.text.strip():
                member.partial = utt
            return None
        member.partial = None
        member.last_final_end = max(utt.end, member.last_final_end or utt.end)
        text = utt.text.strip()
        if not text:
            return None
        member.finals += 1
        member.last_final = utt
        member.lines += 1
        member.last_line_t = utt.end
        line, merged = self._line_for(utt.user_id, utt.name or member.name, text, utt.start, utt.end, utt.end_of_turn)
        if merged:
            self.history.pop()
        else:
            self._seq += 1
        self.history.append(line)
        return line

    def history_with(self, partial: Utterance) -> list[RoomLine]:
        """The history as it will be if `partial`'s text becomes the member's final (merged the same way)."""
        lines = list(self.history)
        text = partial.text.strip()
        member = self.members.get(partial.user_id)
        if not text or member is None:
            return lines
        line, merged = self._line_for(
            partial.user_id, partial.name or member.name, text, partial.start, partial.end, partial.end_of_turn
        )
        if merged:
            lines.pop()
        lines.append(line)
        return lines

    def _line_for(
        self, user_id: int, name: str, text: str, start: float, end: float, end_of_turn: float | None = None
    ) -> tuple[RoomLine, bool]:
        """The history line for a member's final, and whether it merges into their last line (one turn)."""
        overlapped = self._bot_was_speaking_at(start)
        last = self.history[-1] if self.history else None
        if (
            last is not None
            and not last.is_bot
            and last.user_id == user_id
            and start - last.end <= self.merge_gap_s
            and last.seq > self.responded_to_seq
        ):
            return RoomLine(
                last.seq,
                last.user_id,
                name or last.name,
                _clip(f"{last.text} {text}"),
                last.start,
                max(last.end, end),
                False,
                overlapped_bot=last.overlapped_bot and overlapped,
                end_of_turn=end_of_turn,
            ), True
        return RoomLine(
            self._seq + 1,
            user_id,
            name,
            _clip(text),
            start,
            end,
            False,
            overlapped_bot=overlapped,
            end_of_turn=end_of_turn,
        ), False

    def _member_for_event(self, user_id: int, t: float, name: str | None = None) -> Member | None:
        if user_id == self.bot_user_id:
            log.warning("ignoring the bot's own voice (user %s)", user_id)
            return None
        member = self.members.get(user_id)
        if member is None:
            departed = next((d for d in reversed(self.departures) if d.user_id == user_id), None)
            if departed is not None:
                # Their last words, transcribed after they left: history, but not a member again.
                return Member(user_id, name or departed.name, departed.t, greeted=True)
            # Heard before the join event: Discord orders these loosely.
            member = self.member_joined(user_id, name or f"member {user_id}", t)
            member.greeted = True  # do not greet someone already talking
        return member

    def _bot_was_speaking_at(self, t: float) -> bool:
        if self.bot_state is BotState.SPEAKING and self.turn and self.turn.speaking_since is not None:
            return t >= self.turn.speaking_since - 0.05
        last_bot = self.last_bot_line()
        return last_bot is not None and last_bot.start <= t < last_bot.end

    # --- the bot's own line ---------------------------------------------------------------------
    def bot_begin(
        self,
        kind: str,
        t: float,
        *,
        reply_to_seq: int | None = None,
        preemptive: bool = False,
        basis_user_id: int | None = None,
        basis_text: str | None = None,
        to_member: int | None = None,
    ) -> BotTurn:
        if self.turn is not None:
            raise RuntimeError("the bot is already busy with a line")
        basis = self.members.get(basis_user_id) if basis_user_id is not None else None
        prepared_seq = None
        if preemptive and reply_to_seq is not None:
            # prepared during a wait: the line stays open (a continuation merges into it) until confirmed
            prepared_seq, reply_to_seq = reply_to_seq, None
            prepared = self.line(prepared_seq)
            self.prepared.append((prepared_seq, prepared.text if prepared is not None else ""))
        self.turn = BotTurn(
            kind,
            t,
            reply_to_seq=reply_to_seq,
            prepared_seq=prepared_seq,
            preemptive=preemptive,
            basis_user_id=basis_user_id,
            basis_text=basis_text,
            basis_finals=basis.finals if basis else 0,
            prev_responded_to_seq=self.responded_to_seq,
            to_member=to_member,
        )
        self.bot_state = BotState.THINKING
        if reply_to_seq is not None:
            self.responded_to_seq = max(self.responded_to_seq, reply_to_seq)
        return self.turn

    def bot_confirm(self, reply_to_seq: int, t: float) -> None:
        """A preemptive start was confirmed by the final transcript: it now answers that line."""
        if self.turn is None:
            return
        self.turn.preemptive = False
        self.turn.confirmed_at = t
        self.turn.reply_to_seq = reply_to_seq
        self.responded_to_seq = max(self.responded_to_seq, reply_to_seq)

    def bot_pause(self, t: float, user_id: int) -> None:
        """Someone speaks over the bot's line: its voice stops while they speak (the line is kept)."""
        turn = self.turn
        if turn is None:
            return
        if turn.paused_since is None:
            turn.paused_since = t
            turn.pauses += 1
            if turn.ducked_since is None:
                turn.paused_for = set()
            turn.ducked_since = None
        turn.paused_for.add(user_id)

    def bot_duck(self, t: float, user_id: int) -> None:
        """Someone speaks over the bot's line: its voice goes on, turned down, while they may be brief."""
        turn = self.turn
        if turn is None:
            return
        if turn.ducked_since is None and turn.paused_since is None:
            turn.ducked_since = t
            turn.paused_for = set()
        turn.paused_for.add(user_id)

    def bot_resume(self) -> None:
        """The speech over the bot was a backchannel: its line goes on (at full voice)."""
        if self.turn is not None:
            self.turn.paused_since = None
            self.turn.ducked_since = None
            self.turn.paused_for = set()

    def bot_audio_started(self, t: float) -> None:
        if self.turn is not None and self.turn.speaking_since is None:
            self.turn.speaking_since = t
            self.bot_state = BotState.SPEAKING
            if not self.turn.opening:
                self.last_bot_start_t = t

    def bot_end(
        self, t: float, *, seconds_played: float | None = None, discard: bool = False, interrupted: bool = False
    ) -> RoomLine | None:
        """The bot's line is over (finished, cut by a barge-in, or discarded before it was heard).

        What enters the history is what was heard: all of it, or the words played before the cut
        (`seconds_played`). `interrupted`: the line was stopped before its end, even if everything
        synthesized so far had been played (the cut fell between two fragments).
        """
        turn, self.turn = self.turn, None
        self.bot_state = BotState.IDLE
        if turn is None:
            return None
        if discard:
            # Dropped unheard: the line it answered is open again (a continuation merges into it).
            self.responded_to_seq = turn.prev_responded_to_seq
            return None
        self.last_bot_line_t = t  # an attempt, heard or not: cooldowns count from it (no retry loops)
        if turn.speaking_since is None:
            return None
        if seconds_played is None:
            text, cut = turn.text, False
        else:
            text, cut = turn.heard_text(seconds_played)
        cut = cut or interrupted
        if not text:
            # Cut before a word of it was heard (its member went on with their turn): that line is open again.
            self.responded_to_seq = turn.prev_responded_to_seq
            if turn.reply_to_seq is not None:
                self.cut_unheard_seq = turn.reply_to_seq
            return None
        self._seq += 1
        answered = self.line(turn.reply_to_seq)
        line = RoomLine(
            self._seq,
            None,
            self.bot_name,
            _clip(text + ("…" if cut else "")),
            turn.speaking_since,
            t,
            True,
            interrupted=cut,
            addressee=answered.user_id if answered is not None else turn.to_member,
            opening=turn.opening,
        )
        self.history.append(line)
        return line


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"
