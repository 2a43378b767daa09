"""The scripted-conversation parts that need no bot: member voices, the true end of speech, the channel mix,
the benchmark's stage intervals, and script validation. (The whole conversation runs in test_demo_e2e.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.settings import load_settings
from simulator import audio_files
from simulator.channel_recording import channel_mix, place_packets
from simulator.join_command import ScriptError
from simulator.scripted import Line, ScriptedConversation
from simulator.voices import ALICE, BOB, CHEN, LEAD_S, MemberVoice, synthesize_line, voiced_frames

N = audio_files.FRAME_SAMPLES


@pytest.fixture(scope="module")
def settings():
    return load_settings(env={}, env_file=None)


@pytest.mark.parametrize("member", [ALICE, BOB, CHEN], ids=lambda m: m.name)
def test_member_lines_are_trimmed_speech_with_their_true_end(settings, member) -> None:
    line = synthesize_line(settings, member.voice, "Hey Juniper, what should I cook tonight?")
    assert line.pcm.dtype == np.int16 and line.pcm.shape[1] == 2 and line.pcm.shape[0] % N == 0
    voiced = voiced_frames(line.pcm)
    assert voiced.sum() > 40  # over 0.8 s of speech
    assert not voiced[: int(LEAD_S / 0.02)].any() and not line.pcm[: int(LEAD_S * 48_000) - N].any()  # quiet lead-in
    last = line.last_voiced_frame
    assert voiced[last] and not voiced[last + 1 :].any() and len(voiced) - 1 - last <= 3  # the true end of speech
    assert line.voiced_s == pytest.approx((last + 1) * 0.02)
    assert 1.0 < line.seconds < 5.0


def test_the_voices_differ(settings) -> None:
    text = "Have you read any good books lately?"
    lengths = {m.name: synthesize_line(settings, m.voice, text).seconds for m in (ALICE, BOB, CHEN)}
    assert len({round(v, 2) for v in lengths.values()}) == 3, lengths


def test_unknown_voice_engine_is_refused(settings) -> None:
    with pytest.raises(ValueError, match="unknown member voice engine"):
        synthesize_line(settings, MemberVoice("festival"), "hello")


def test_a_script_speaker_must_be_in_the_cast(settings) -> None:
    with pytest.raises(ScriptError, match="Zed"):
        ScriptedConversation(settings, [ALICE], [Line("Zed", "hi")])


def test_bot_packets_are_placed_at_their_arrival_and_bursts_are_queued() -> None:
    tone = (np.sin(np.arange(10 * N) / 48_000 * 2 * np.pi * 300) * 12_000).astype(np.int16)
    pcm = np.repeat(tone[:, None], 2, axis=1)
    origin = 100.0
    # 5 packets in real time from t=1.0, then (after a 2 s gap) 5 packets in a burst at t=3.5
    arrivals = [origin + 1.0 + 0.02 * i for i in range(5)] + [origin + 3.5] * 5
    pieces = place_packets(pcm, arrivals, origin)
    assert [round(t, 3) for t, _ in pieces] == [1.0, 3.5]
    assert [p.shape[0] for _, p in pieces] == [5 * N, 5 * N]  # the burst is played out, not stacked
    mix = channel_mix([(0.2, pcm[: 2 * N])], pcm, [], arrivals, origin=origin, rate=24_000)
    loud = np.flatnonzero(np.abs(mix) > 0.05) / 24_000
    assert loud[0] == pytest.approx(0.2, abs=0.01)  # the member's line
    assert ((loud > 0.99) & (loud < 1.11)).any() and ((loud > 3.49) & (loud < 3.61)).any()
    assert not ((loud > 1.2) & (loud < 3.4)).any()


def test_stage_intervals_show_an_early_start_overlapping_the_end_of_speech() -> None:
    from benchmarks.e2e_intervals import INTERVALS, turn_intervals

    stages = {
        "request": 0.2,
        "final": 0.4,
        "first_token": 0.3,
        "first_fragment": 0.5,
        "first_audio": 0.6,
        "first_packet": 0.61,
        "heard": 0.62,
    }
    got = {INTERVALS[i][0]: (t0, t1) for i, t0, t1 in turn_intervals(stages)}
    assert got["end of speech confirmed (VAD)"] == (0.0, 0.4)  # no VAD end: the final confirmed it
    assert got["LLM to first token"] == (0.2, 0.3)  # the reply began during the end-of-speech silence
    assert got["first packet on its way to the member"] == (0.61, 0.62)
    assert "final transcript" not in got  # needs both ends
    del stages["first_token"]
    assert "LLM to first token" not in {INTERVALS[i][0] for i, _, _ in turn_intervals(stages)}


def test_live_transcript_shows_who_spoke_what_was_heard_and_the_latency() -> None:
    import io

    from simulator.demo import LiveTranscript
    from simulator.scripted import ScriptEvent

    out = io.StringIO()
    show = LiveTranscript(out, width=6)
    for event in (
        ScriptEvent("status", text="loading models"),
        ScriptEvent("ready", speaker="Juniper", text="Alice, Bob"),
        ScriptEvent("line", speaker="Alice", text="Hey Juniper, what's up?"),
        ScriptEvent("heard", speaker="Alice", text="Hey, Juniper, what's up?"),
        ScriptEvent("bot_start", speaker="Juniper", latency_s=0.7),
        ScriptEvent("bot_line", speaker="Juniper", text="Not much!", latency_s=0.74, detail="respond_now/spoken"),
        ScriptEvent("quiet", speaker="Juniper", text="Bob"),
    ):
        show(event)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("· loading models")
    assert 'Alice    ▸ "Hey Juniper, what\'s up?"' in lines[2]
    assert 'heard: "Hey, Juniper, what\'s up?"' in lines[3]
    assert lines[4].strip() == 'Juniper  ◂ "Not much!"  (0.74 s)'
    assert "stays quiet" in lines[5]
    assert "\033" not in out.getvalue()  # no terminal codes when the output is not a terminal
