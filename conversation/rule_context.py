"""What every turn-taking rule reads: the room at one moment, the policy, and the questions they share
(whose names a line says, which line is still open, has a member finished their turn)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from conversation.addressing import NameMatcher, NamesSaid, members_called, resolve_names
from conversation.asking import asks_the_room
from conversation.line_shape import QUESTION_OPENERS, ends_unfinished, is_backchannel
from conversation.text_words import words
from conversation.vocative import CALL_WORDS
from conversation.decision import Policy
from conversation.member import Member
from conversation.room import Room
from conversation.room_lines import RoomLine


STATEMENT_MIN_WORDS = 4  # "I have a question." is a statement that may go on; "Thanks so much." is not


@lru_cache(maxsize=64)
def _bot_matcher(name: str, aliases: tuple[str, ...], spelling: float, sound: float) -> NameMatcher:
    return NameMatcher.for_name(name, aliases, spelling_threshold=spelling, sound_threshold=sound)


def bot_matcher(name: str, aliases: tuple[str, ...], policy: Policy) -> NameMatcher:
    """The bot's name matcher with the policy's thresholds (one per name, aliases and thresholds)."""
    return _bot_matcher(name, tuple(aliases), policy.name_spelling_threshold, policy.name_sound_threshold)


@dataclass(frozen=True)
class Ctx:
    room: Room
    now: float
    policy: Policy

    @cached_property
    def bot_name(self) -> NameMatcher:
        return bot_matcher(self.room.bot_name, self.room.bot_aliases, self.policy)

    def names_in(self, text: str, speaker_id: int | None) -> NamesSaid:
        """Who `text` names, the bot's name and aliases weighed against the names of the others present."""
        others = tuple((m.user_id, m.name) for m in self.room.members.values() if m.user_id != speaker_id)
        return resolve_names(text, self.bot_name, others)

    def members_called(self, line: RoomLine) -> tuple[int, ...]:
        """The members `line` calls by name (`conversation.addressing.members_called`), not those it talks about."""
        others = tuple((m.user_id, m.name) for m in self.room.members.values() if m.user_id != line.user_id)
        return members_called(line.text, self.bot_name, others)

    def names_bot(self, line: RoomLine) -> bool:
        return self.names_in(line.text, line.user_id).bot

    @cached_property
    def open_line(self) -> RoomLine | None:
        """The latest human line the bot has neither answered nor spoken after (backchannels skipped,
        except one that answers the bot's question: "Yes!")."""
        room = self.room
        lines = list(room.history)
        for i in range(len(lines) - 1, -1, -1):
            line = lines[i]
            if line.is_bot or line.seq <= room.responded_to_seq:
                return None
            if not is_backchannel(line.text) or self.names_bot(line):
                return line
            if i > 0 and lines[i - 1].is_bot and lines[i - 1].text.rstrip().endswith("?"):
                return line
        return None

    def _before_closing_name(self, text: str) -> str | None:
        """The sentence before a name that ends `text` on its own after a full stop or question mark
        ("…lately? Juniper", "…tonight. Bob."), else None. Only a name (and a "hey"), nothing that opens
        a new sentence ("…lately? Juniper, what…")."""
        stripped = text.strip()
        body = stripped.rstrip(".?!")
        cut = max(body.rfind("?"), body.rfind("."), body.rfind("!"))
        if cut <= 0:
            return None
        tail = [w for w in words(body[cut + 1 :]) if w not in CALL_WORDS]
        if not 0 < len(tail) <= 3 or "," in body[cut + 1 :] or any(w in QUESTION_OPENERS for w in tail):
            return None
        said = self.names_in(" ".join(tail), None)
        named = words(self.room.bot_name) if said.bot else words(" ".join(self.room.name_of(m) for m in said.members))
        if not (said.bot or said.members) or len(tail) > len(named) + 1:
            return None
        return body[: cut + 1].strip()

    def alone_with(self) -> Member | None:
        humans = self.room.humans
        return humans[0] if len(humans) == 1 else None

    def turn_finished(self, text: str, end_of_turn: float | None) -> bool:
        """Has the member finished their turn with these words? The words first ("… and" is never finished),
        then a question mark (Whisper writes one when it heard a question asked), then the semantic
        end-of-turn model when it judged the voice (without it, a turn is taken as finished).

        A name said after a finished sentence closes it ("Have you read any good books lately? Juniper",
        the name its own segment after a pause): the sentence before it decides, by its words; the model
        heard only the name, which alone sounds unfinished."""
        if ends_unfinished(text):
            return False
        sentence = self._before_closing_name(text)
        if sentence is not None:
            return sentence.endswith(("?", ".", "!")) and not ends_unfinished(sentence)
        if text.rstrip().endswith("?"):
            return True
        if end_of_turn is not None:
            return end_of_turn >= self._end_of_turn_bar(text)
        return True

    def _end_of_turn_bar(self, text: str) -> float:
        """How sure the end-of-turn model must be that `text` ends the turn. A statement that asks nothing, of
        `STATEMENT_MIN_WORDS` words or more besides the bot's name, needs the statement bar: people say a list,
        a story or a preface to the bot a sentence at a time, with a pause Whisper closes with a full stop.
        A question, a request and a short line ("Thanks, Juniper.", "Good night.") close at the model's bar."""
        bar = self.policy.end_of_turn_threshold
        name = set(words(self.room.bot_name)) | {w for alias in self.room.bot_aliases for w in words(alias)}
        said = [w for w in words(text) if w not in CALL_WORDS and w not in name]
        # the words without the name too: "Juniper Tell me a story." (no comma) is a request
        if len(said) < STATEMENT_MIN_WORDS or asks_the_room(text) or asks_the_room(" ".join(said)):
            return bar
        return max(bar, self.policy.statement_end_of_turn_threshold)
