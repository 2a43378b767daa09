"""Play one turn-taking corpus scenario against the real bot on the loopback voice channel, and judge it.

    result = await run_scenario(corpus.get("pause-wondering-sea"), base_settings)
    result.passed, [s.observed for s in result.steps]

The members speak their lines in real time (Opus, DAVE, transport encryption) at the times the scenario
gives; the bot is the production path (`simulator.scenario.bot_in_channel`). What the bot did is read from
what a member HEARD (the bot's voiced packets, after DAVE decryption and Opus decoding) and from the
session's own record (its lines and decisions), then each step is judged against its expectation
(`simulator.turn_judge`).

A keep/yield step needs a bot line long enough to talk over, and a `require = "question"` step needs the
bot to ask one: when the model makes those preconditions false the step says so (`precondition_failed`),
and the runner plays the scenario again (up to `attempts`), which is the scenario's setup, not its outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.settings import PROJECT_ROOT, Settings
from simulator import audio_files
from simulator.member import FRAME_SECONDS
from simulator.scenario import Scenario, bot_in_channel, spoken_line, write_persona
from simulator.turn_corpus import CorpusScenario, Step
from simulator.turn_judge import ScenarioResult, judge
from simulator.voices import voiced_frames

log = logging.getLogger(__name__)

REPLY_WAIT_S = 8.0  # after a line, how long to wait for the bot to begin a reply before moving on
LINE_WAIT_S = 60.0  # the longest wait for a bot line to finish
LONG_REPLY_WORDS, LONG_REPLY_SENTENCES, LONG_REPLY_TOKENS = 60, 4, 110


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
        pcm = line.pcm if i == 0 else line.pcm[first * n :]  # later parts: no lead-in, the pause is the silence
        if i > 0:
            last -= first
            first = 0
        if step.clip is not None:
            end = min(pcm.shape[0], (first * n) + int(step.clip * audio_files.DISCORD_RATE))
            pcm = pcm[:end].copy()
            fade = min(960, end - first * n)
            pcm[end - fade :] = (pcm[end - fade :].astype(np.float32) * np.linspace(1.0, 0.0, fade)[:, None]).astype(
                np.int16
            )
            last = min(last, end // n - 1)
        spans.append(
            ((offset + first * n) / audio_files.DISCORD_RATE, (offset + (last + 1) * n) / audio_files.DISCORD_RATE)
        )
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
        write_persona(
            folder,
            max_words=LONG_REPLY_WORDS,
            max_sentences=LONG_REPLY_SENTENCES,
            source=persona_file(scenario.persona, base.personas_dir),
        )
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
        if self.settings.greet_members:
            await self._after_greeting()
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
                log.info(
                    "turns: %s step %d: the reply %r asks nothing; asking again", self.scenario.id, index + 1, reply
                )
                if attempt == 2:
                    self.requirement_failed = f"step {index + 1}: the bot did not ask a question in 3 tries"
            self.spans.append(span)
            if self.requirement_failed:
                return  # the steps after it were written for a setup that did not happen: not played, not judged
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
                if (
                    prev_end is not None
                    and time.monotonic() > prev_end + REPLY_WAIT_S
                    and self.sc.session.room.turn is None
                ):
                    return None  # no reply is coming
                await asyncio.sleep(0.02)
            return None
        if prev_end is not None:
            await self._settle(prev_end, 0.0)
        return time.monotonic() + step.delay + 0.2

    async def _after_greeting(self) -> None:
        """With greetings on (the product's default), the members begin once the bot has said hello to the room,
        as people who waited for the newcomer to finish."""
        room = self.sc.session.room
        deadline = time.monotonic() + LINE_WAIT_S
        while time.monotonic() < deadline and not room.room_greeted:
            await asyncio.sleep(0.05)
        await self._settle(time.monotonic(), 0.0)

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
        log.info(
            "turns: %s: precondition failed (%s); playing it again",
            scenario.id,
            "; ".join(s.note for s in result.steps if s.note),
        )
    assert result is not None
    result.wall_s = round(time.monotonic() - started, 2)
    return result


async def _attempt(scenario: CorpusScenario, settings: Settings, audio: list[_Utterance]) -> ScenarioResult:
    play = _Play(scenario, settings, audio)
    result = ScenarioResult(
        scenario.id,
        scenario.family,
        scenario.split,
        scenario.persona,
        [f"{m.name} ({m.voice.describe()})" for m in scenario.members],
        [],
    )
    try:
        async with bot_in_channel(settings, list(scenario.members)) as sc:
            await play.run(sc)
            judge(play, sc, result)
    except Exception as exc:  # recorded, never fatal to the corpus run
        log.exception("turns: scenario %s failed to run", scenario.id)
        result.error = f"{type(exc).__name__}: {exc}"
    return result
