"""What the prompter decided, and the policy knobs the rules read."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Action(str, enum.Enum):
    RESPOND_NOW = "respond_now"  # answer the line `reply_to_seq` (or, preemptive, a member's partial)
    WAIT = "wait"  # something may be due at `until`; check again
    START_TOPIC = "start_topic"  # the room went quiet: bring it back to life
    NOTICE = "notice"  # say the spoken listening notice (the session's first line, spoken as written)
    GREET = "greet"  # greet `member_id` (None: the whole room, at the start, with one of the persona's greetings)
    FAREWELL = "farewell"  # a member left: say goodbye / notice it
    YIELD_FLOOR = "yield_floor"  # stop talking / drop the reply being prepared
    DUCK = "duck"  # someone speaks over the bot's line: turn its voice down and talk on while they are brief
    PAUSE = "pause"  # someone speaks over the bot's line: stop its voice and listen (the line is kept)
    RESUME = "resume"  # it was a backchannel ("mm-hm", a laugh): go on with the line where it stopped
    STAY_SILENT = "stay_silent"  # nothing to say


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str  # human-readable, goes to the decision log
    rule: str = ""  # the rule that decided
    until: float | None = None  # WAIT / STAY_SILENT: when the rules may decide differently without a new event
    member_id: int | None = None  # GREET/FAREWELL target, YIELD_FLOOR/PAUSE: who spoke, preemptive: whose partial
    reply_to_seq: int | None = None  # RESPOND_NOW: the room line answered
    addressed: bool = False  # RESPOND_NOW: the bot was spoken to (not joining in)
    # RESPOND_NOW on a partial transcript, before the final arrived; with `reply_to_seq`: a reply to a final
    # line prepared during the wait before it, its audio held until the wait ends
    preemptive: bool = False
    confirm: bool = False  # RESPOND_NOW: the early start was confirmed by the final transcript

    @property
    def prepared(self) -> bool:
        """A reply to a final line made during the wait before it (its audio held until the wait ends), not an
        early start on a partial transcript."""
        return self.preemptive and self.reply_to_seq is not None

    @property
    def speaks(self) -> bool:
        return (
            self.action in (Action.RESPOND_NOW, Action.START_TOPIC, Action.NOTICE, Action.GREET, Action.FAREWELL)
            and not self.confirm
        )

    def log_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action.value, "rule": self.rule, "reason": self.reason}
        for key in ("member_id", "reply_to_seq", "until"):
            value = getattr(self, key)
            if value is not None:
                out[key] = round(value, 3) if isinstance(value, float) else value
        for key in ("addressed", "preemptive", "confirm"):
            if getattr(self, key):
                out[key] = True
        return out


@dataclass(frozen=True, slots=True)
class Policy:
    """Turn-taking knobs (times in seconds). `from_settings` maps the PROMPTER_* settings."""

    reply_silence_s: float = 0.25  # silence before answering a finished line addressed to the bot
    incomplete_wait_s: float = 1.8  # silence before answering a line that sounds unfinished (or a bare call)
    # The words read finished but the end-of-turn model heard an unfinished voice: the two disagree, so a
    # middle wait (a pause inside a turn rarely lasts longer; a finished speaker is not kept waiting 1.8 s).
    unsure_wait_s: float = 1.0
    group_silence_s: float = 1.2  # silence before answering an unaddressed line when alone with its speaker
    # The end-of-turn model holds a reply back only when it is sure the member is not done: its middle range
    # means "unsure" (and on synthesized voices it is often unsure about plainly finished sentences, while
    # broken-off ones score near 0), and a member kept waiting 1.8 s for nothing is a slow bot.
    end_of_turn_threshold: float = 0.2
    # A statement to the bot that asks nothing ("Juniper, for the picnic we have bread.", "Juniper, I have a
    # question.") is as often the first of several sentences (a list, a story, a preface) as a whole turn, and
    # Whisper's full stop cannot tell which: only a confident model closes it (`Ctx.turn_finished`).
    statement_end_of_turn_threshold: float = 0.9
    idle_topic_s: float = 45.0  # quiet before starting a topic
    cooldown_s: float = 4.0  # minimum gap between the bot's last line and an unprompted one
    barge_in_s: float = 1.0  # speech over the bot this long takes the floor, whatever its words
    barge_in_gap_s: float = 0.5  # a member's bursts over the bot with shorter gaps add up toward barge_in_s
    speech_tail_s: float = 0.0  # the VAD's end-of-speech silence: a finished span ends this long before its stop event
    # Speech begun this soon after the bot's first sound cannot answer words not heard yet: from the member
    # being answered, it is their own turn going on after a pause the bot took for its end.
    own_turn_window_s: float = 0.5
    # Speech over the bot first turns its voice down (a person talks on through "yeah"); after this much of
    # their voice since then it falls silent to listen (0: silent at once).
    duck_s: float = 0.5
    max_pause_s: float = 4.0  # paused for speech over it this long without a verdict: the bot gives up its line
    greet_members: bool = True
    max_unprompted_in_row: int = 2  # bot lines with no human line in between, at most
    preemptive_start: bool = True  # start the LLM on a complete-looking partial when a member pauses
    # While waiting out a silence before a reply (an unsure end of turn, a question to the room), prepare the
    # reply with its audio held; it goes out when the wait ends, or is dropped unheard (`rules.rule_prepared_check`).
    prepare_in_wait: bool = True
    prepare_min_wait_s: float = 0.3  # a shorter wait left is only waited: the reply would not be ready sooner
    final_timeout_s: float = 2.5  # speech ended, no final transcript yet: stop waiting for it after this
    addressed_max_age_s: float = 20.0  # an addressed line older than this is not answered any more
    greet_window_s: float = 30.0  # greet a member who joined at most this long ago
    farewell_window_s: float = 10.0
    exchange_gap_s: float = 4.0  # two humans alternating within this gap are talking to each other
    question_answer_window_s: float = 10.0  # a human line this soon after the bot's question answers it
    follow_up_window_s: float = 8.0  # a question this soon after the bot answered its asker is a follow-up
    # A question to the room that no human takes up within this silence is the bot's (0: never); only in a
    # conversation the bot takes part in: its voice began at most `room_question_context_s` before it.
    room_question_wait_s: float = 1.6
    room_question_context_s: float = 60.0
    name_spelling_threshold: float = 0.8
    name_sound_threshold: float = 0.55

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "Policy":
        values: dict[str, Any] = {
            "reply_silence_s": settings.reply_silence_ms / 1000.0,
            "group_silence_s": settings.group_silence_ms / 1000.0,
            "idle_topic_s": settings.idle_topic_s,
            "cooldown_s": settings.cooldown_s,
            "barge_in_s": settings.barge_in_ms / 1000.0,
            "speech_tail_s": settings.vad_end_silence_ms / 1000.0,
            "greet_members": settings.greet_members,
        }
        for attr, key, scale in (
            ("max_unprompted", "max_unprompted_in_row", 1),
            ("preemptive_start", "preemptive_start", 1),
            ("prepare_in_wait", "prepare_in_wait", 1),
            ("incomplete_wait_ms", "incomplete_wait_s", 1000.0),
            ("unsure_wait_ms", "unsure_wait_s", 1000.0),
            ("room_question_wait_ms", "room_question_wait_s", 1000.0),
            ("duck_ms", "duck_s", 1000.0),
            ("turn_model_threshold", "end_of_turn_threshold", 1),
            ("turn_model_statement_threshold", "statement_end_of_turn_threshold", 1),
        ):
            if hasattr(settings, attr):  # optional settings
                value = getattr(settings, attr)
                values[key] = value / scale if scale != 1 else value
        values.update(overrides)
        return cls(**values)
