"""Seeing the queue: the scheduler records when work asked for a model and for which guild; the end-of-turn
judgement carries its times; a turn's trace reads back as wait vs compute per stage (`runtime.stage_times`)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from audio.end_of_turn import load_smart_turn
from audio.pause_judge import PauseJudge, judged_times
from audio.vad import Segment
from runtime.scheduler import ModelScheduler
from runtime.stage_times import admission_reasons, stage_waits
from simulator.speech import piper_speech_16k


def test_the_scheduler_records_when_each_guilds_work_asked_and_got_its_slot() -> None:
    scheduler = ModelScheduler("exclusive")
    inside = threading.Event()
    release = threading.Event()

    def first() -> None:
        with scheduler.hold("llm", owner="reply-a", group=1):
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(5)
    model_asked = time.monotonic() - 0.2  # it waited for the model itself before asking for the slot

    def second() -> None:
        with scheduler.hold("tts", owner="reply-b", group=2, asked=model_asked):
            pass

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.3)
    release.set()
    worker.join(5)
    waiter.join(5)
    a, b = sorted(scheduler.intervals(), key=lambda iv: iv.start)
    assert (a.group, b.group) == ("1", "2") and (a.owner, b.owner) == ("reply-a", "reply-b")
    assert a.asked is not None and a.start - a.asked < 0.05  # the token was free
    assert b.asked == model_asked and b.start >= a.end  # it waited behind reply-a, from when it asked for the model
    assert b.start - b.asked >= 0.45
    assert scheduler.stats()["waited_s"]["tts"] >= 0.45


def test_a_prefill_records_its_wait_for_quiet_and_the_model_under_its_guild() -> None:
    scheduler = ModelScheduler("exclusive")
    asked = time.monotonic()
    with scheduler.foreground(group=7):  # a reply of another guild in flight: the prefill waits
        done = threading.Event()

        def prefill() -> None:
            with scheduler.background("llm", owner="prefill-9", quiet_s=0.0, group=9):
                pass
            done.set()

        threading.Thread(target=prefill).start()
        time.sleep(0.25)
        assert not done.is_set()
    assert done.wait(5)
    (iv,) = scheduler.intervals("llm")
    assert iv.group == "9" and iv.owner == "prefill-9"
    assert iv.asked is not None and iv.asked >= asked and iv.start - iv.asked >= 0.2


def test_stage_waits_reads_a_trace_and_leaves_out_stages_out_of_order() -> None:
    t = 100.0
    times = {
        "stt_queued": t,
        "stt_start": t + 0.4,
        "stt_done": t + 0.5,
        "eot_asked": t - 0.3,
        "eot_start": t - 0.3,
        "eot_done": t - 0.25,
        "llm_asked": t + 0.6,
        "llm_slot": t + 2.6,
        "first_token": t + 2.8,
        "tts_asked": t + 3.0,
        "tts_slot": t + 2.9,  # out of order: not reported
        "first_audio": t + 3.2,
        "holding_line": t + 2.1,
        "shortened": t + 2.6,
    }
    waits = stage_waits(times)
    assert set(waits) == {"stt", "end_of_turn", "llm_first_token"}
    assert np.allclose(waits["stt"], (0.4, 0.1)) and np.allclose(waits["llm_first_token"], (2.0, 0.2))
    assert np.allclose(waits["end_of_turn"], (0.0, 0.05))
    assert admission_reasons(times) == ["holding_line", "shortened"]


def test_an_end_of_turn_judgement_carries_when_it_was_asked_started_and_done() -> None:
    audio = piper_speech_16k("What should I cook tonight?")
    seg = Segment(user_id=1, capacity=audio.size + 16000)
    seg.append(audio)
    seg.last_voice_sample = audio.size
    stats = SimpleNamespace(end_of_turn_calls=0, end_of_turn_ms_total=0.0)
    judge = PauseJudge(load_smart_turn(), stats)
    before = time.monotonic()
    future = judge.judge(seg)
    assert judged_times(None) == {}
    judgement = future.result(timeout=30)
    times = judged_times(future)
    assert before <= times["eot_asked"] <= times["eot_start"] <= times["eot_done"]
    assert times["eot_done"] - times["eot_start"] >= judgement.compute_s * 0.9  # the model's own time is inside
    assert 0.0 <= judgement.probability <= 1.0
    waited, computed = stage_waits(times)["end_of_turn"]
    assert waited >= 0.0 and computed > 0.0
