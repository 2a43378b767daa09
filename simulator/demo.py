"""The offline demo: simulated members talk with the real chorus bot on the loopback voice channel.

`python -m bot` without a DISCORD_TOKEN (or with `--demo`) runs it: two or three members with distinct
synthetic voices hold a short conversation with the default persona, through the whole real path
(RTP + transport encryption + DAVE + Opus both ways, Whisper, the turn-taking rules, the LLM, Piper).
The terminal shows a live transcript (who spoke, what chorus heard, what it said and how long after
the member stopped speaking its voice reached the channel); `out/demo/channel.wav` is the whole
conversation as heard in the channel and `out/demo/turns.json` the per-turn trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TextIO

from runtime.errors import ModelLoadError
from runtime.settings import Settings
from simulator.join_command import ScriptError
from simulator.scripted import ConversationResult, Line, ScriptedConversation, ScriptEvent
from simulator.voices import DEFAULT_CAST

# The bot named at the start, in the middle and at the end of a line; a line between members it lets pass;
# a follow-up that needs an earlier turn. Each line the bot answers has what an on-topic answer contains
# (words, as the quality benchmark's rubrics), so the summary tells how many answers said something.
FULL_SCRIPT: tuple[Line, ...] = (
    Line("Alice", "Juniper, what should I cook tonight? I have eggs, rice and some spinach."),
    Line("Bob", "I need something to read, Juniper, any good books lately?"),
    Line("Chen", "Do you think it will rain this weekend, Juniper?"),
    Line("Alice", "Bob, are you still coming to the game on Saturday?", expect_reply=False, pause_s=0.3),
    Line("Bob", "Yes, I will be there. Juniper, what snacks should we bring?"),
    Line("Chen", "Juniper, what did Alice want to cook?"),
)
QUICK_SCRIPT: tuple[Line, ...] = (
    Line("Alice", "Juniper, what should I cook tonight with eggs and rice?"),
    Line("Bob", "Have you read any good books lately, Juniper?"),
)
ON_TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    FULL_SCRIPT[0].text: (
        "fried",
        "omelet",
        "omelette",
        "stir",
        "frittata",
        "bowl",
        "curry",
        "soup",
        "scramble",
        "salad",
        "pasta",
        "dish",
    ),
    FULL_SCRIPT[1].text: ("book", "novel", "read", "author", "story", "series", "mystery", "fantasy"),
    FULL_SCRIPT[2].text: ("rain", "sun", "weather", "cloud", "storm", "umbrella", "forecast", "warm", "cold", "dry"),
    FULL_SCRIPT[4].text: (
        "chip",
        "crisp",
        "popcorn",
        "pizza",
        "cookie",
        "fruit",
        "cheese",
        "nacho",
        "pretzel",
        "dip",
        "sandwich",
        "cake",
        "snack",
        "chocolate",
    ),
    FULL_SCRIPT[5].text: ("egg", "rice", "spinach", "fried", "cook", "dinner"),
    QUICK_SCRIPT[0].text: (
        "fried",
        "omelet",
        "omelette",
        "stir",
        "frittata",
        "bowl",
        "curry",
        "soup",
        "scramble",
        "pasta",
        "dish",
    ),
    QUICK_SCRIPT[1].text: ("book", "novel", "read", "author", "story", "series", "mystery", "fantasy"),
}
NOISY_LOGGERS = (
    "",
    "discord",
    "runtime",
    "storage",
    "bot",
    "cogs",
    "audio",
    "brain",
    "conversation",
    "simulator",
    "chorus",
    "faster_whisper",
    "llama_cpp",
    "RealtimeTTS",
)
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def demo_plan(quick: bool) -> tuple[list, list[Line]]:
    """(cast, script) of the demo: two members and two turns with `quick`, else three and five."""
    if quick:
        return list(DEFAULT_CAST[:2]), list(QUICK_SCRIPT)
    return list(DEFAULT_CAST), list(FULL_SCRIPT)


class LiveTranscript:
    """Prints the conversation as it happens, with a spinner status line on a terminal."""

    def __init__(self, out: TextIO = sys.stdout, *, width: int = 8) -> None:
        self.out = out
        self.tty = out.isatty()
        self.width = width
        self.status = "starting"
        self.started = time.monotonic()
        self._task: asyncio.Task | None = None
        self._bot = "chorus"

    # -- drawing ---------------------------------------------------------------------------------
    def _clear(self) -> None:
        if self.tty:
            self.out.write("\r\033[K")

    def println(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    async def spin(self) -> None:
        for frame in itertools.cycle(SPINNER):
            if self.tty:
                cols = shutil.get_terminal_size((100, 20)).columns
                line = f"{frame} {self.status}  [{time.monotonic() - self.started:5.1f} s]"
                self.out.write("\r\033[K\033[2m" + line[: cols - 1] + "\033[0m")
                self.out.flush()
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.spin())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._clear()
        self.out.flush()

    # -- events ----------------------------------------------------------------------------------
    def __call__(self, event: ScriptEvent) -> None:
        if event.kind == "ready":
            self.width = max(self.width, len(event.speaker) + 1)
        name = event.speaker.ljust(self.width)
        if event.kind == "status":
            self.status = event.text
            if not self.tty:
                self.println(f"  · {event.text}")
        elif event.kind == "ready":
            self._bot = event.speaker
            self.println(f"  {event.speaker} joined the voice channel. Members: {event.text}")
            self.status = "waiting"
        elif event.kind == "line":
            self.println(f'  {name} ▸ "{event.text}"')
            self.status = f"{event.speaker} is speaking"
        elif event.kind == "heard":
            heard = 'heard: "' + event.text + '"'
            self.println(f"  {'':{self.width}}   {self._dim(heard)}")
            self.status = f"{self._bot} is thinking"
        elif event.kind == "bot_start":
            self.status = f"{event.speaker} is speaking"
        elif event.kind == "bot_line":
            latency = f"  ({event.latency_s:.2f} s)" if event.latency_s is not None and event.latency_s > 0 else ""
            cut = " [interrupted]" if "interrupted" in event.detail else ""
            self.println(f'  {name} ◂ "{event.text}"{self._bold(latency)}{cut}')
            self.status = "listening"
        elif event.kind == "quiet":
            self.println(
                f"  {'':{self.width}}   {self._dim(f'({event.speaker} stays quiet: {event.text} was talking to someone else)')}"
            )
            self.status = "listening"
        elif event.kind == "unanswered":
            self.println(f"  {'':{self.width}}   {self._dim('(no reply: ' + event.detail + ')')}")

    def _dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.tty else text

    def _bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.tty else text


def on_topic(said: str, reply: str) -> bool | None:
    """Whether the answer to `said` has a word an on-topic answer has (None: the line has no such list)."""
    from conversation.text_words import words
    from simulator.term_match import term_in

    wanted = ON_TOPIC_WORDS.get(said)
    if wanted is None:
        return None
    said_words = words(reply)
    return any(term_in(w, said_words) for w in wanted)


def summarize(result: ConversationResult) -> list[str]:
    latencies = [t.latency_s for t in result.turns if t.latency_s is not None and not t.warmup]
    expected = [t for t in result.turns if t.expect_reply]
    answered = [t for t in expected if t.status == "answered"]
    judged = [(t, on_topic(t.said, t.answer.text if t.answer else "")) for t in expected]
    judged = [(t, ok) for t, ok in judged if ok is not None]
    lines = [
        f"{len(answered)} of {len(expected)} questions answered"
        + (f", {sum(1 for _, ok in judged if ok)} of {len(judged)} on topic" if judged else "")
        + f"; {result.wall_s:.0f} s in all."
    ]
    if latencies:
        lines.append(
            "End of speech → first bot audio at the member: "
            f"median {statistics.median(latencies):.2f} s, best {min(latencies):.2f} s, worst {max(latencies):.2f} s"
        )
    for key, label in (("channel_wav", "channel recording"), ("turns_json", "turn trace")):
        if key in result.files:
            lines.append(f"{label}: {result.files[key]}")
    return lines


async def demo_conversation(settings: Settings, *, out_dir: Path, quick: bool, out: TextIO) -> ConversationResult:
    """Run the demo conversation with its live transcript on `out`; returns the recorded result."""
    cast, script = demo_plan(quick)
    if quick:
        settings = settings.replace(greet_members=False)
    display = LiveTranscript(out, width=max(len(c.name) for c in cast) + 1)
    display.println(
        f"chorus offline demo: {', '.join(c.name for c in cast)} talk with {settings.default_persona} on a loopback "
        "Discord voice channel\n  (real RTP/DAVE/Opus; faster-whisper hears, the local LLM thinks, Piper speaks)\n"
    )
    display.start()
    convo = ScriptedConversation(
        settings, cast, script, out_dir=out_dir, label="demo", on_event=display, reply_timeout_s=90.0, warm_up=True
    )
    try:
        result = await convo.run()
    finally:
        await display.stop()
    display.println("")
    for text in summarize(result):
        display.println(text)
    return result


async def _run(settings: Settings, out_dir: Path, quick: bool, out: TextIO) -> int:
    await demo_conversation(settings, out_dir=out_dir, quick=quick, out=out)
    return 0


def run_demo(
    settings: Settings, *, out_dir: Path = Path("out/demo"), quick: bool = False, out: TextIO | None = None
) -> int:
    """Run the demo to the end; 0 on success, 1 if the conversation could not run."""
    stream = out or sys.stdout
    saved = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    if settings.log_level != "debug":  # a live transcript, not a log dump
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("discord").setLevel(logging.ERROR)
    try:
        return asyncio.run(_run(settings, Path(out_dir), quick, stream))
    except (ScriptError, TimeoutError) as exc:
        print(f"chorus demo: {exc}", file=sys.stderr)
        return 1
    except ModelLoadError:
        raise
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
