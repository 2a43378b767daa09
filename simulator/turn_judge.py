"""Judging one played turn-taking scenario: what the members heard of the bot, against each step's expectation.

* speak: a new bot line reaches the members after the step's first word and before the next step (and,
  with `within`, at most that long after its last word); latency = the step's last word → the first voiced
  packet of that line;
* quiet: no new bot line in that window;
* keep:  the bot line playing when the step began is not cut (its outcome is "spoken"); the longest gap in
  the bot's voice meanwhile is reported (a pause to listen, then going on), and when it turned its voice
  down (a keep or a yield step: the step's first word -> the bot's decision to go softer);
* yield: the bot line playing when the step began is cut; stop = the step's first word → the end of the
  bot's run of voice that was going on (the pauses between its sentences bridged).

Every start of the bot's voice (a new line, or going on after a pause) that falls inside a member's
utterance, or within 200 ms after its start, is a talk-over.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.scenario import Scenario
from simulator.turn_corpus import Step

if TYPE_CHECKING:
    from simulator.turn_runner import _Play

RUN_GAP_S = 0.3  # a gap this long in the bot's voiced packets separates two runs of its voice
STOP_GAP_S = 0.6  # after a takeover, the bot has stopped once its voice has been silent this long
TALK_OVER_GRACE_S = 0.2  # the bot's voice starting this soon after a member started talks over them
SPEAK_AFTER_S = 12.0  # a "speak" line answered later than this (after its end) was not answered
KEEP_MARGIN_S = 0.3  # a backchannel over a line with less left than this does not test anything
YIELD_MARGIN_S = 0.6


@dataclass
class StepResult:
    index: int
    who: str
    said: str
    expect: str
    timing: str
    onset: float  # seconds after the scenario began: the step's first voiced 20 ms
    true_end: float  # its last voiced 20 ms
    observed: str = "pending"  # spoke | quiet | kept | yielded | cut | talked_on | precondition_failed
    ok: bool | None = None  # None: not judged (precondition failed)
    latency_s: float | None = None  # speak: last word -> first voiced packet of the reply
    stop_s: float | None = None  # yield: first word -> the bot's last voiced packet
    pause_s: float | None = None  # keep: the longest gap in the bot's voice while and after the member spoke
    duck_s: float | None = None  # keep/yield: first word -> the bot turned its voice down (its decision)
    gap_s: float | None = None  # keep: the silence the bot put in for them (its pause -> its resume; 0: none)
    reply: str = ""  # speak: what the bot said
    stages: dict[str, float] = field(default_factory=dict)  # speak: the reply's milestones, s after the last word
    heard: str = ""  # what chorus transcribed of the line
    rule: str = (
        ""  # speak: the rule whose decision began the reply (`TurnTrace.rule`: preemptive_start, prepare_in_wait, …)
    )
    name_said: bool = False  # the line names the bot (or one of its aliases)
    name_heard: bool = False  # ...and the transcript still does (Whisper may bend a name past recognition)
    note: str = ""


@dataclass
class ScenarioResult:
    id: str
    family: str
    split: str
    persona: str
    members: list[str]
    steps: list[StepResult]
    attempts: int = 1
    talk_overs: list[dict[str, Any]] = field(default_factory=list)
    bot_starts: int = 0  # starts of the bot's voice (new lines and resumptions)
    bot_lines: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    end_of_turn_calls: int = 0  # semantic end-of-turn model: calls and their total time
    end_of_turn_ms: float = 0.0
    voice_held_s: float = 0.0  # the bot's voice held at its own pauses while someone spoke over it
    error: str = ""
    wall_s: float = 0.0

    @property
    def judged(self) -> list[StepResult]:
        return [s for s in self.steps if s.ok is not None]

    @property
    def precondition_failed(self) -> bool:
        return any(s.observed == "precondition_failed" for s in self.steps)

    @property
    def passed(self) -> bool:
        return not self.error and not self.talk_overs and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def _runs(voiced: list[float]) -> list[tuple[float, float]]:
    """The bot's voiced packets as runs (first, last arrival), split at gaps of RUN_GAP_S."""
    runs: list[tuple[float, float]] = []
    for t in sorted(voiced):
        if runs and t - runs[-1][1] < RUN_GAP_S:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs


def judge(play: _Play, sc: Scenario, result: ScenarioResult) -> None:
    t0 = play.t0
    ears = play._ears()
    voiced = sorted(ears.voiced)
    runs = _runs(voiced)
    traces = [t for t in sc.traces(t0 - 1.0)]
    lines = []  # (heard onset, trace) of every bot line that reached the members
    for trace in traces:
        first_packet = trace.times.get("first_packet")
        if first_packet is None:
            continue
        heard = ears.first_after(first_packet - 0.005)
        if heard is not None:
            lines.append((heard, trace))
    lines.sort(key=lambda item: item[0])
    result.bot_lines = [
        {"at_s": round(h - t0, 3), "kind": t.kind, "outcome": t.outcome, "text": t.text, "reason": t.reason}
        for h, t in lines
    ]
    result.decisions = [
        {"at_s": round(at - t0, 3), **d.log_fields()} for at, d in list(sc.session.decisions) if at >= t0 - 1.0
    ]
    history = [ln for ln in sc.session.room.history if ln.end >= t0 - 1.0]
    result.heard = [f"{ln.name}: {ln.text}" for ln in history]
    stats = getattr(sc.session.listener, "stats", None)
    result.end_of_turn_calls = int(getattr(stats, "end_of_turn_calls", 0))
    result.end_of_turn_ms = round(float(getattr(stats, "end_of_turn_ms_total", 0.0)), 1)
    result.voice_held_s = round(int(getattr(sc.session.player, "frames_held", 0)) * 0.02, 2)

    spans = play.spans
    end_of_play = time.monotonic()
    for i, step in enumerate(play.scenario.steps):
        if i >= len(spans):
            break
        onset, true_end, _parts = spans[i]
        window_end = spans[i + 1][0] if i + 1 < len(spans) else end_of_play
        member = play.scenario.member(step.who)
        sr = StepResult(
            i + 1, step.who, step.text, step.expect, step.timing, round(onset - t0, 3), round(true_end - t0, 3)
        )
        sr.heard = " ".join(
            ln.text
            for ln in history
            if ln.user_id == member.user_id and ln.end >= onset - 0.3 and ln.start <= true_end + 0.3
        )
        sr.name_said, sr.name_heard = names_bot(sc, step.text), names_bot(sc, sr.heard)
        new_lines = [(h, t) for h, t in lines if onset <= h < window_end]
        if step.expect in ("speak", "quiet"):
            _judge_turn(sr, step, new_lines, true_end)
        else:
            _judge_overlap(sr, step, lines, voiced, onset, true_end)
        if play.requirement_failed and sr.ok is None and not sr.note:
            sr.note = play.requirement_failed
        result.steps.append(sr)
    if play.requirement_failed and not any(s.observed == "precondition_failed" for s in result.steps):
        result.steps[-1].observed, result.steps[-1].ok = "precondition_failed", None
        result.steps[-1].note = play.requirement_failed

    result.bot_starts = len(runs)
    humans = [(onset, end) for onset, end, _ in spans]
    for start, _end in runs:
        for onset, end in humans:
            if onset <= start <= max(end, onset + TALK_OVER_GRACE_S):
                result.talk_overs.append(
                    {
                        "bot_voice_at_s": round(start - t0, 3),
                        "member_from_s": round(onset - t0, 3),
                        "member_to_s": round(end - t0, 3),
                    }
                )
                break


def names_bot(sc: Scenario, text: str) -> bool:
    """Whether `text` names the bot, by the session's own name matcher (no members: the bot's names alone)."""
    from conversation.addressing import NameMatcher, resolve_names

    room, policy = sc.session.room, sc.session.policy
    matcher = NameMatcher.for_name(
        room.bot_name,
        room.bot_aliases,
        spelling_threshold=policy.name_spelling_threshold,
        sound_threshold=policy.name_sound_threshold,
    )
    return bool(text) and resolve_names(text, matcher, ()).bot


def _judge_turn(sr: StepResult, step: Step, new_lines: list[tuple[float, Any]], true_end: float) -> None:
    spoke = [(h, t) for h, t in new_lines if h <= true_end + SPEAK_AFTER_S]
    sr.observed = "spoke" if spoke else "quiet"
    sr.ok = (sr.observed == "spoke") == (step.expect == "speak")
    if spoke:
        heard, trace = spoke[0]
        sr.reply = trace.text
        sr.rule = trace.rule
        sr.stages = {k: round(v - true_end, 3) for k, v in sorted(trace.times.items(), key=lambda kv: kv[1])}
        if heard >= true_end:
            sr.latency_s = round(heard - true_end, 3)
        else:
            sr.note = "the bot began before the member's last word"
        if step.within is not None and heard - true_end > step.within:
            sr.ok = False
            sr.note = f"answered {heard - true_end:.2f} s after the last word, later than {step.within:g} s"


def _playing_at(lines: list[tuple[float, Any]], t: float) -> tuple[float, Any] | None:
    """The bot line whose voice had begun by `t` and which had not ended before it."""
    for heard, trace in reversed(lines):
        if heard <= t and trace.times.get("end", float("inf")) >= t:
            return heard, trace
    return None


def _judge_overlap(
    sr: StepResult, step: Step, lines: list[tuple[float, Any]], voiced: list[float], onset: float, true_end: float
) -> None:
    playing = _playing_at(lines, onset)
    if playing is None:
        sr.observed, sr.note = "precondition_failed", "the bot was not speaking when the member began"
        return
    heard, trace = playing
    audio_s = float(getattr(trace, "audio_s", 0.0) or 0.0)
    planned_end = heard + audio_s  # when its voice would have ended, uncut and unpaused
    later = [h for h, t in lines if h > heard]
    line_end = min(later) if later else float("inf")
    own = [t for t in voiced if heard <= t < line_end]
    ducks = [t for t in getattr(trace, "ducks", ()) if t >= onset - 0.05]
    sr.duck_s = round(max(0.0, ducks[0] - onset), 3) if ducks else None
    if step.expect == "keep":
        if planned_end < true_end + KEEP_MARGIN_S:
            sr.observed, sr.note = (
                "precondition_failed",
                f"the line ended {true_end - planned_end:+.2f} s before the member finished",
            )
            return
        after = [t for t in own if t >= onset]
        gaps = np.diff([onset, *after]) if after else np.zeros(0)
        sr.pause_s = round(float(gaps.max()), 3) if gaps.size else None
        paused, resumed = trace.times.get("paused"), trace.times.get("resumed")
        if paused is None or paused < onset - 0.05:
            sr.gap_s = 0.0
        elif resumed is not None and resumed >= paused:
            sr.gap_s = round(resumed - paused, 3)
        sr.observed = "kept" if trace.outcome == "spoken" else "cut"
        sr.ok = sr.observed == "kept"
        return
    if planned_end < onset + YIELD_MARGIN_S:
        sr.observed, sr.note = (
            "precondition_failed",
            f"the line had only {planned_end - onset:.2f} s left when the member began",
        )
        return
    # the bot stopped when its voice went silent for good: the end of the run of voice (gaps under
    # STOP_GAP_S bridged: the pauses between its sentences) that was going on when the member began
    stop = heard
    for t in own:
        if t - stop >= STOP_GAP_S and t > onset:
            break
        stop = t
    sr.stop_s = round(max(0.0, stop - onset), 3)
    sr.observed = "yielded" if trace.outcome in ("interrupted", "discarded") else "talked_on"
    sr.ok = sr.observed == "yielded"
