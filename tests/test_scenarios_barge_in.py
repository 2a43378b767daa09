"""Barge-in on the loopback voice channel with the real pipeline: the bot turns its voice down as soon as
someone speaks over it; a short "mm-hm" is a backchannel (the bot goes on with its line, and does not answer it); a real
takeover makes it give up the line, and its voice at the members' ears ends while the member is still
talking (the milliseconds are the benchmark's: `python -m benchmarks.turns_bench --family takeover`).

Timing: the takeover's voice onset is the send time of the member's packet carrying its first voiced 20 ms
frame; the bot's voice is what another member heard (DAVE-decrypted and decoded).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures_scenarios import ALICE, BOB, bot_in_channel, clip_voiced, scenario_settings, write_persona

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(400)]

STORY = "Juniper, tell me a long story about a dragon and a lighthouse."
# Each attempt asks for a different story: the small model answers one request in two words now and then
# ("A mountain."), and asked the same again it tends to say the same.
SECONDS = (
    "Juniper, tell me another long story, about a pirate this time.",
    "Juniper, tell me a long story about a wizard who lost his hat.",
    "Juniper, tell me a long story about a princess and a storm at sea.",
    "Juniper, tell me a long story about a robot who grows a garden.",
)
MM_HM = "Mm-hmm."
# One breath, no comma pauses at the start: "Wait, wait, hold on" is heard as bursts shorter than the
# barge-in threshold, each ended by the VAD's end-of-speech silence (see the note in the report).
TAKEOVER = "Actually I really want to tell everybody about my trip to the mountains last weekend."
MM_HM_S = 0.3
SECOND_ATTEMPTS = len(SECONDS)


async def test_mm_hm_lets_the_bot_go_on_and_a_takeover_stops_it(tmp_path: Path) -> None:
    write_persona(tmp_path / "personas", max_words=60, max_sentences=4)
    settings = scenario_settings(
        tmp_path,
        CHORUS_PERSONAS_DIR=str(tmp_path / "personas"),
        LLM_MAX_TOKENS="100",
        PROMPTER_COOLDOWN_S="30",
        PROMPTER_PREEMPTIVE="false",
    )
    barge_in_s = settings.barge_in_ms / 1000.0
    assert MM_HM_S < barge_in_s
    lines = [("Alice", STORY), *(("Alice", second) for second in SECONDS), ("Bob", MM_HM), ("Bob", TAKEOVER)]
    async with bot_in_channel(settings, [ALICE, BOB], synthesize=lines) as sc:
        mm_hm = clip_voiced(await sc.line("Bob", MM_HM), MM_HM_S)

        # 1. Alice asks for a story; while the bot tells it, Bob says a 300 ms "mm-hm": it pauses, then goes on.
        asked = await sc.say("Alice", STORY)
        first_heard = await sc.wait_heard("Alice", asked.true_end)
        story = await sc.wait_trace(
            lambda t: t.kind == "respond_now" and "first_packet" in t.times, since=asked.onset, done=False
        )
        mm = await sc.say("Bob", MM_HM, at=first_heard + 0.4, audio=mm_hm)
        assert mm.true_end - mm.onset <= MM_HM_S + 0.03
        await sc.wait_for(lambda: time.monotonic() > mm.true_end + barge_in_s + 1.0, 10, "a moment")
        assert not sc.decisions(mm.onset, ["yield_floor"]), sc.describe()
        await sc.wait_idle(quiet_s=0.1)
        assert story.outcome == "spoken", sc.describe()
        if sc.decisions(mm.onset, ["duck", "pause"]):  # it listened to the "mm-hm", then went on as before
            assert sc.decisions(mm.onset, ["resume"]), sc.describe()
            assert sc.ears["Alice"].voiced_between(mm.true_end, story.times["end"]), sc.describe()
        # the "mm-hm" was no bid for the turn: no reply to it
        mm_lines = [ln for ln in sc.human_lines(mm.onset - 0.5) if ln.user_id == BOB.user_id]
        replied = [d for d in sc.decisions(mm.onset) if d.member_id == BOB.user_id]
        assert not replied, (mm_lines, sc.describe())

        # 2. Alice asks again; this time Bob talks over the bot for real. The model picks the reply's
        # length: one that ends before Bob's takeover turns into a barge-in leaves nothing to measure,
        # so Alice asks again (the scenario's precondition, not its outcome).
        for attempt in range(1, SECOND_ATTEMPTS + 1):
            asked = await sc.say("Alice", SECONDS[attempt - 1])
            first_heard = await sc.wait_heard("Alice", asked.true_end)
            second = await sc.wait_trace(
                lambda t: t.kind == "respond_now" and "first_packet" in t.times, since=asked.onset, done=False
            )
            takeover = await sc.say("Bob", TAKEOVER, at=first_heard + 0.5)
            await sc.wait_for(lambda: second.outcome != "pending", 30, "the bot to stop")
            if second.outcome != "spoken" or second.times["end"] > takeover.onset + barge_in_s + 0.4:
                break  # (the VAD confirms speech a moment after its onset)
            print(f"attempt {attempt}: the reply ({second.text!r}) ended before the takeover became a barge-in")
            await sc.wait_idle(quiet_s=0.5)
        assert second.outcome == "interrupted", sc.describe()
        holds = sc.decisions(takeover.onset, ["duck", "pause"])  # its voice turned down or stopped at once
        yields = sc.decisions(takeover.onset, ["yield_floor"])
        assert holds and holds[0].member_id == BOB.user_id, sc.describe()
        assert yields and yields[0].member_id == BOB.user_id and "took the floor" in yields[0].reason, sc.describe()
        # the bot's voice at Alice's ears, from the takeover until the bot's next line (if any), ended while
        # Bob was still talking: he did not have to talk over it
        next_line = [
            t.times["first_packet"] for t in sc.traces(second.decided) if t is not second and "first_packet" in t.times
        ]
        window_end = min(next_line) if next_line else float("inf")
        voiced = sc.ears["Alice"].voiced_between(takeover.onset, window_end)
        stopped = voiced[-1] if voiced else takeover.onset
        print(
            f"takeover onset {takeover.onset:.3f}: the bot turned down {_held_at(second) - takeover.onset:.3f} s "
            f"after it, its last packet reached Alice {stopped - takeover.onset:.3f} s after it"
        )
        assert stopped < takeover.true_end - 1.0, (stopped - takeover.onset, takeover.true_end - takeover.onset)
        # what Bob heard of the bot during his takeover was cut, and the room knows the line was cut
        cut_line = [ln for ln in sc.bot_lines() if ln.interrupted]
        assert cut_line and cut_line[-1].text.endswith("…"), sc.describe()
        assert second.times["yielded"] - second.times["first_packet"] < 60


async def test_a_question_over_the_listening_notice_takes_the_floor_and_is_answered(tmp_path: Path) -> None:
    """The spoken notice is the session's first line: a member who asks something over it gets the floor at
    once (the notice stops, no pause-and-see) and is answered as if the bot had been quiet, by name or, if
    the name was lost, as a question to the room nobody else took up."""
    settings = scenario_settings(tmp_path, PRIVACY_NOTICE_SPOKEN="true")
    question = "Juniper, what should I cook tonight with eggs and rice?"
    async with bot_in_channel(settings, [ALICE, BOB], synthesize=[("Alice", question)]) as sc:
        notice = await sc.wait_trace(lambda t: t.kind == "notice" and "first_packet" in t.times, done=False)
        heard = await sc.wait_heard("Bob", notice.times["first_packet"] - 0.1)
        asked = await sc.say("Alice", question, at=heard + 0.8)
        await sc.wait_for(lambda: notice.outcome != "pending", 10, "the notice to stop")
        assert notice.outcome == "interrupted", sc.describe()
        assert notice.times["yielded"] - asked.onset < 1.0, sc.describe()  # at the voice's onset (VAD), not its end
        assert not sc.ears["Bob"].voiced_between(asked.onset + 1.0, asked.true_end), sc.describe()
        reply = await sc.wait_trace(lambda t: t.kind == "respond_now" and t.outcome != "discarded", since=asked.onset)
        assert reply.outcome == "spoken" and reply.times["decided"] >= asked.true_end, sc.describe()
        assert not sc.session.room.notice_pending and sc.decisions(asked.onset, ["notice"]) == [], sc.describe()


def _held_at(trace) -> float:
    """When the bot first turned its voice down or stopped it for someone over it."""
    return min([*trace.ducks, trace.times.get("paused", float("inf"))])
