"""Play one turn-taking corpus scenario against the real bot on the loopback voice channel, and judge it.

    result = await run_scenario(corpus.get("pause-wondering-sea"), base_settings)
    result.passed, [s.observed for s in result.steps]

The members speak their lines in real time (Opus, DAVE, transport encryption) at the times the scenario
gives; the bot is the production path (`simulator.scenario.bot_in_channel`). What the bot did is read from
what a member HEARD (the bot's voiced packets, after DAVE decryption and Opus decoding) and from the
session's own record (its lines and decisions), then each step is judged against its expectation:

* speak: a new bot line reaches the members after the step's first word and before the next step;
  latency = the step's last word → the first voiced packet of that line;
* quiet: no new bot line in that window;
* keep:  the bot line playing when the step began is not cut (its outcome is "spoken"); the longest gap in
  the bot's voice meanwhile is reported (a pause to listen, then going on);
* yield: the bot line playing when the step began is cut; stop = the step's first word → the bot's last
  voiced packet of that line.

A keep/yield step needs a bot line long enough to talk over, and a `require = "question"` step needs the
bot to ask one: when the model makes those preconditions false the step says so (`precondition_failed`),
and the runner plays the scenario again (up to `attempts`), which is the scenario's setup, not its outcome.
Every start of the bot's voice (a new line, or going on after a pause) that falls inside a member's
utterance, or within 200 ms after its start, is a talk-over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.settings import PROJECT_ROOT, Settings
from simulator import audio_files
from simulator.member import FRAME_SECONDS
from simulator.scenario import Scenario, bot_in_channel, spoken_line, write_persona
from simulator.turn_corpus import CorpusScenario, Step
from simulator.voices import voiced_frames

log = logging.getLogger(__name__)

RUN_GAP_S = 0.3  # a gap this long in the bot's voiced packets separates two runs of its voice
STOP_GAP_S = 0.6  # after a takeover, the bot has stopped once its voice has been silent this long
TALK_OVER_GRACE_S = 0.2  # the bot's voice starting this soon after a member started talks over them
REPLY_WAIT_S = 8.0  # after a line, how long to wait for the bot to begin a reply before moving on
LINE_WAIT_S = 60.0  # the longest wait for a bot line to finish
SPEAK_AFTER_S = 12.0  # a "speak" line answered later than this (after its end) was not answered
KEEP_MARGIN_S = 0.3  # a backchannel over a line with less left than this does not test anything
YIELD_MARGIN_S = 0.6
LONG_REPLY_WORDS, LONG_REPLY_SENTENCES, LONG_REPLY_TOKENS = 60, 4, 110


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
    reply: str = ""  # speak: what the bot said
    heard: str = ""  # what chorus transcribed of the line
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


@dataclass
class _Utterance:
    """One step's audio, with where each part's voice begins and ends (seconds into `pcm`)."""

    pcm: np.ndarray
    lead_s: float  # before the first voiced frame
    parts: list[tuple[float, float]]


# --- audio -----------------------------------------------------------------------------------------

def utterance_audio(settings: Settings, scenario: CorpusScenario, step: Step) -> _Utterance:
    """The step's line in its member's voice (blocking): parts joined by their pauses, clipped if asked."""
    member = scenario.member(step.who)
    n = audio_files.FRAME_SAMPLES
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    offset = 0
    for i, text in enumerate(step.parts):
        line = spoken_line(settings, member, text)
        voiced = voiced_frames(line.pcm)
        first = int(np.argmax(voiced))
        last = int(len(voiced) - 1 - np.argmax(voiced[::-1]))
        pcm = line.pcm if i == 0 else line.pcm[first * n:]  # later parts: no lead-in, the pause is the silence
        if i > 0:
            last -= first
            first = 0
        if step.clip is not None:
            end = min(pcm.shape[0], (first * n) + int(step.clip * audio_files.DISCORD_RATE))
            pcm = pcm[:end].copy()
            fade = min(960, end - first * n)
            pcm[end - fade:] = (pcm[end - fade:].astype(np.float32) * np.linspace(1.0, 0.0, fade)[:, None]).astype(np.int16)
            last = min(last, end // n - 1)
        spans.append(((offset + first * n) / audio_files.DISCORD_RATE, (offset + (last + 1) * n) / audio_files.DISCORD_RATE))
        pieces.append(pcm[: (last + 1 + 2) * n])
        offset += pieces[-1].shape[0]
        if i < len(step.pauses):
            gap = int(round(step.pauses[i] / FRAME_SECONDS)) * n - 2 * n
            pieces.append(np.zeros((max(0, gap), 2), dtype=np.int16))
            offset += pieces[-1].shape[0]
    return _Utterance(np.ascontiguousarray(np.concatenate(pieces)), spans[0][0], spans)


# --- settings ----------------------------------------------------------------------------------------

def persona_file(name: str, folder: Path = PROJECT_ROOT / "personas") -> Path:
    for path in sorted(folder.glob("*.toml")):
        try:
            if tomllib.loads(path.read_text(encoding="utf-8")).get("name") == name:
                return path
        except (OSError, tomllib.TOMLDecodeError):
            continue
    raise FileNotFoundError(f"no persona named {name!r} in {folder}")


def scenario_settings_for(base: Settings, scenario: CorpusScenario, tmp: Path) -> Settings:
    """The bench's settings with the scenario's persona; long replies from a copy with a longer limit."""
    settings = base.replace(data_dir=tmp / "data", default_persona=scenario.persona)
    if scenario.long_replies:
        folder = tmp / "personas"
        write_persona(folder, max_words=LONG_REPLY_WORDS, max_sentences=LONG_REPLY_SENTENCES,
                      source=persona_file(scenario.persona, base.personas_dir))
        settings = settings.replace(personas_dir=folder, llm_max_tokens=max(base.llm_max_tokens, LONG_REPLY_TOKENS))
    return settings


# --- running ---------------------------------------------------------------------------------------------

class _Play:
    """One attempt at a scenario: the members' lines at their times, and what the bot did."""

    def __init__(self, scenario: CorpusScenario, settings: Settings, audio: list[_Utterance]) -> None:
        self.scenario = scenario
        self.settings = settings
        self.audio = audio
        self.spans: list[tuple[float, float, list[tuple[float, float]]]] = []  # per step: onset, end, parts
        self.requirement_failed = ""

    async def run(self, sc: Scenario) -> None:
        self.sc = sc
        self.t0 = time.monotonic()
        prev_end: float | None = None
        for index, (step, utt) in enumerate(zip(self.scenario.steps, self.audio)):
            for attempt in range(3 if step.require else 1):
                voice_at = await self._voice_time(step, prev_end)
                if voice_at is None:
                    self.requirement_failed = f"step {index + 1}: the bot was not speaking to talk over"
                    self.spans.append((time.monotonic(), time.monotonic(), []))
                    return
                said = await sc.say(step.who, step.text, at=voice_at - utt.lead_s, audio=utt.pcm)
                start = said.start
                parts = [(start + a, start + b) for a, b in utt.parts]
                span = (parts[0][0], parts[-1][1], parts)
                prev_end = span[1]
                if step.require != "question":
                    break
                reply = await self._reply_text(span[0])
                if "?" in reply:
                    break
                log.info("turns: %s step %d: the reply %r asks nothing; asking again", self.scenario.id, index + 1,
                         reply)
                if attempt == 2:
                    self.requirement_failed = f"step {index + 1}: the bot did not ask a question in 3 tries"
            self.spans.append(span)
        await self._settle(prev_end or time.monotonic(), self.scenario.watch_s)

    async def _voice_time(self, step: Step, prev_end: float | None) -> float | None:
        """When the step's first voiced frame should go out."""
        now = time.monotonic()
        if step.timing == "gap" and prev_end is not None:
            return max(now + 0.05, prev_end + step.delay)
        if step.timing == "over_bot":
            since = prev_end if prev_end is not None else self.t0
            ears = self._ears()
            deadline = now + LINE_WAIT_S
            while time.monotonic() < deadline:
                heard = ears.first_after(since)
                if heard is not None:
                    return max(time.monotonic() + 0.05, heard + step.delay)
                if prev_end is not None and time.monotonic() > prev_end + REPLY_WAIT_S and self.sc.session.room.turn is None:
                    return None  # no reply is coming
                await asyncio.sleep(0.02)
            return None
        if prev_end is not None:
            await self._settle(prev_end, 0.0)
        return time.monotonic() + step.delay + 0.2

    def _ears(self) -> Any:
        return self.sc.ears[self.scenario.members[0].name]

    async def _settle(self, since: float, watch_s: float) -> None:
        """Until the bot has finished what it began after `since` (or began nothing for a while), then
        at least `watch_s` after `since`."""
        session = self.sc.session
        deadline = time.monotonic() + LINE_WAIT_S
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            busy = session.room.turn is not None or any(t.outcome == "pending" for t in self.sc.traces(since - 5.0))
            started = any(t.decided >= since - 5.0 for t in self.sc.traces(since - 5.0))
            if busy:
                quiet_since = None
            else:
                quiet_since = quiet_since or now
                waited_for_reply = started or now > since + REPLY_WAIT_S
                if waited_for_reply and now - quiet_since >= 0.4 and now >= since + watch_s:
                    return
            await asyncio.sleep(0.05)
        log.warning("turns: %s: the bot did not settle in %.0f s", self.scenario.id, LINE_WAIT_S)

    async def _reply_text(self, since: float) -> str:
        await self._settle(since, 0.0)
        lines = [t.text for t in self.sc.traces(since) if t.outcome in ("spoken", "interrupted")]
        return " ".join(lines)


async def run_scenario(scenario: CorpusScenario, base: Settings, *, attempts: int = 3, tmp: Path) -> ScenarioResult:
    """Play `scenario` (again when a precondition failed, up to `attempts` times) and judge every step."""
    settings = scenario_settings_for(base, scenario, tmp)
    started = time.monotonic()
    audio = await asyncio.to_thread(lambda: [utterance_audio(settings, scenario, s) for s in scenario.steps])
    result: ScenarioResult | None = None
    for attempt in range(1, attempts + 1):
        result = await _attempt(scenario, settings, audio)
        result.attempts = attempt
        if not result.precondition_failed or result.error:
            break
        log.info("turns: %s: precondition failed (%s); playing it again", scenario.id,
                 "; ".join(s.note for s in result.steps if s.note))
    assert result is not None
    result.wall_s = round(time.monotonic() - started, 2)
    return result


async def _attempt(scenario: CorpusScenario, settings: Settings, audio: list[_Utterance]) -> ScenarioResult:
    play = _Play(scenario, settings, audio)
    result = ScenarioResult(scenario.id, scenario.family, scenario.split, scenario.persona,
                            [f"{m.name} ({m.voice.describe()})" for m in scenario.members], [])
    try:
        async with bot_in_channel(settings, list(scenario.members)) as sc:
            await play.run(sc)
            judge(play, sc, result)
    except Exception as exc:  # recorded, never fatal to the corpus run
        log.exception("turns: scenario %s failed to run", scenario.id)
        result.error = f"{type(exc).__name__}: {exc}"
    return result


# --- judging ---------------------------------------------------------------------------------------------

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
    result.bot_lines = [{"at_s": round(h - t0, 3), "kind": t.kind, "outcome": t.outcome, "text": t.text,
                         "reason": t.reason} for h, t in lines]
    result.decisions = [{"at_s": round(at - t0, 3), **d.log_fields()} for at, d in list(sc.session.decisions)
                        if at >= t0 - 1.0]
    history = [ln for ln in sc.session.room.history if ln.end >= t0 - 1.0]
    result.heard = [f"{ln.name}: {ln.text}" for ln in history]
    stats = getattr(sc.session.listener, "stats", None)
    result.end_of_turn_calls = int(getattr(stats, "end_of_turn_calls", 0))
    result.end_of_turn_ms = round(float(getattr(stats, "end_of_turn_ms_total", 0.0)), 1)

    spans = play.spans
    end_of_play = time.monotonic()
    for i, step in enumerate(play.scenario.steps):
        if i >= len(spans):
            break
        onset, true_end, _parts = spans[i]
        window_end = spans[i + 1][0] if i + 1 < len(spans) else end_of_play
        member = play.scenario.member(step.who)
        sr = StepResult(i + 1, step.who, step.text, step.expect, step.timing, round(onset - t0, 3),
                        round(true_end - t0, 3))
        sr.heard = " ".join(ln.text for ln in history if ln.user_id == member.user_id
                            and ln.end >= onset - 0.3 and ln.start <= true_end + 0.3)
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
                result.talk_overs.append({"bot_voice_at_s": round(start - t0, 3), "member_from_s": round(onset - t0, 3),
                                          "member_to_s": round(end - t0, 3)})
                break


def names_bot(sc: Scenario, text: str) -> bool:
    """Whether `text` names the bot, by the session's own name matcher (no members: the bot's names alone)."""
    from conversation.addressing import NameMatcher, resolve_names

    room, policy = sc.session.room, sc.session.policy
    matcher = NameMatcher.for_name(room.bot_name, room.bot_aliases, spelling_threshold=policy.name_spelling_threshold,
                                   sound_threshold=policy.name_sound_threshold)
    return bool(text) and resolve_names(text, matcher, ()).bot


def _judge_turn(sr: StepResult, step: Step, new_lines: list[tuple[float, Any]], true_end: float) -> None:
    spoke = [(h, t) for h, t in new_lines if h <= true_end + SPEAK_AFTER_S]
    sr.observed = "spoke" if spoke else "quiet"
    sr.ok = (sr.observed == "spoke") == (step.expect == "speak")
    if spoke:
        heard, trace = spoke[0]
        sr.reply = trace.text
        if heard >= true_end:
            sr.latency_s = round(heard - true_end, 3)
        else:
            sr.note = "the bot began before the member's last word"


def _playing_at(lines: list[tuple[float, Any]], t: float) -> tuple[float, Any] | None:
    """The bot line whose voice had begun by `t` and which had not ended before it."""
    for heard, trace in reversed(lines):
        if heard <= t and trace.times.get("end", float("inf")) >= t:
            return heard, trace
    return None


def _judge_overlap(sr: StepResult, step: Step, lines: list[tuple[float, Any]], voiced: list[float],
                   onset: float, true_end: float) -> None:
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
    if step.expect == "keep":
        if planned_end < true_end + KEEP_MARGIN_S:
            sr.observed, sr.note = "precondition_failed", f"the line ended {true_end - planned_end:+.2f} s before the member finished"
            return
        after = [t for t in own if t >= onset]
        gaps = np.diff([onset, *after]) if after else np.zeros(0)
        sr.pause_s = round(float(gaps.max()), 3) if gaps.size else None
        sr.observed = "kept" if trace.outcome == "spoken" else "cut"
        sr.ok = sr.observed == "kept"
        return
    if planned_end < onset + YIELD_MARGIN_S:
        sr.observed, sr.note = "precondition_failed", f"the line had only {planned_end - onset:.2f} s left when the member began"
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
