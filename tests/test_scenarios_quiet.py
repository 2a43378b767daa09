"""Two members talk to each other for 30 s on the loopback voice channel: the bot (real pipeline) keeps
out of it, then starts a topic once the room has been quiet for PROMPTER_IDLE_TOPIC_S."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.fixtures_scenarios import ALICE, BOB, bot_in_channel, scenario_settings

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(400)]

IDLE_S = 8.0
GAP_S = 0.6  # between one member's last word and the other's first: a lively exchange
CONVERSATION = (
    ("Alice", "Bob, did you finish painting the fence this weekend?"),
    ("Bob", "Almost, Alice, I still have the back side to do."),
    ("Alice", "You should borrow my brother's sprayer, it is much faster."),
    ("Bob", "Good idea, I will ask him on Thursday after work."),
    ("Alice", "Did you see that the new bakery opened on Main Street?"),
    ("Bob", "Yes, their cinnamon rolls are huge and still warm at eight."),
    ("Alice", "We should go there together before the market on Saturday."),
    ("Bob", "Sure, let us meet at nine and walk over from my place."),
    ("Alice", "Perfect, I will bring the shopping bags and the list."),
    ("Bob", "Great, and I will remind Chen to come along too."),
    ("Alice", "Alright, see you on Saturday morning then."),
)


async def test_stays_out_of_a_30_s_conversation_then_speaks_after_the_idle_time(tmp_path: Path) -> None:
    settings = scenario_settings(tmp_path, PROMPTER_IDLE_TOPIC_S=str(IDLE_S), PROMPTER_COOLDOWN_S="2")
    async with bot_in_channel(settings, [ALICE, BOB], synthesize=CONVERSATION) as sc:
        # Schedule every line at its time, each starting GAP_S after the previous one's last word.
        lines = [await sc.line(name, text) for name, text in CONVERSATION]
        t = time.monotonic() + 0.5
        starts = []
        for line in lines:
            starts.append(t)
            t += line.voiced_s + GAP_S - 0.2  # voiced_s runs to the last voiced frame; 0.2 s lead-in
        said = await asyncio.gather(*(sc.say(name, text, at=at) for (name, text), at in zip(CONVERSATION, starts)))
        first, last = said[0], said[-1]
        assert last.true_end - first.onset >= 30.0, "the conversation is shorter than 30 s"

        # Nothing from the bot while they talk, nor until the room has been quiet for IDLE_S.
        topic = await sc.wait_trace(
            lambda tr: tr.kind == "start_topic", since=first.start, done=False, timeout=IDLE_S + 60
        )
        assert topic.decided >= last.true_end + IDLE_S - 0.05, (topic.decided - last.true_end, sc.describe())
        early = [tr for tr in sc.traces(first.start) if tr.decided < topic.decided]
        assert not early, sc.describe()
        for name in ("Alice", "Bob"):
            assert not sc.ears[name].voiced_between(first.start, topic.decided), name
        # They were heard: most lines made it into the history, alternating speakers.
        heard = sc.human_lines(first.start)
        assert len(heard) >= len(CONVERSATION) - 2, sc.describe()
        assert {ln.name for ln in heard} == {"Alice", "Bob"}
        silent = [d for t_, d in list(sc.session.decisions)]
        assert not any(d.action.value in ("respond_now", "greet", "farewell") for d in silent), sc.describe()

        # The topic start came soon after the idle time, and was spoken to both of them.
        assert topic.decided - last.true_end <= IDLE_S + 3.0, topic.decided - last.true_end
        heard_at = await sc.wait_heard("Alice", topic.decided)
        await sc.wait_for(lambda: topic.outcome != "pending", 60, "the topic line to end")
        assert topic.outcome == "spoken", sc.describe()
        assert sc.ears["Bob"].first_after(topic.decided) is not None
        assert sc.bot_lines() and sc.bot_lines()[-1].text
        print(
            f"topic decided {topic.decided - last.true_end:.2f} s after the last word, "
            f"heard {heard_at - last.true_end:.2f} s after it: {topic.text!r}"
        )
