"""Observability: Prometheus metrics per guild and /healthz over HTTP (prometheus-client's exposition, aiohttp),
with a real VoiceReceiver's counters, the real model scheduler's work slots, and the turn recorder API."""

from __future__ import annotations

import asyncio
import os
import struct
import types
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from bot.client import ChorusBot
from runtime.metrics import Metrics, MetricsServer, record_model_time, record_stage_time
from runtime.scheduler import ModelScheduler
from runtime.settings import PROJECT_ROOT, load_settings
from tests.fixtures_receive import Member, Rig, make_dave_group, speechlike, wait_for

pytestmark = pytest.mark.asyncio

GUILD = 4711


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest_asyncio.fixture
async def served():
    metrics = Metrics().activate()
    health = {"ok": True, "discord": {"ready": True}}
    server = await MetricsServer(metrics, host="127.0.0.1", port=0, health=lambda: health).start()
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, str]:
            async with http.get(f"http://127.0.0.1:{server.port}{path}") as resp:
                return resp.status, await resp.text()

        yield metrics, health, get
    await server.stop()
    metrics.deactivate()


async def test_turn_stages_per_guild(served):
    metrics, _, get = served
    recorder = metrics.for_guild(GUILD)
    t0 = 1000.0
    recorder.observe_turn(
        {
            "speech_end": t0,
            "vad_end": t0 + 0.3,
            "final": t0 + 0.45,
            "request": t0 + 0.46,
            "first_token": t0 + 0.7,
            "first_fragment": t0 + 0.8,
            "first_audio": t0 + 0.95,
            "first_packet": t0 + 1.0,
        },
        "spoken",
    )
    recorder.observe_turn({"vad_end": t0, "final": t0 + 0.2}, "discarded")  # a turn that never spoke
    status, text = await get("/metrics")
    assert status == 200
    s = samples(text)
    g = ("guild", str(GUILD))
    assert s[("chorus_turn_stage_seconds_count", (g, ("stage", "first_token")))] == 1
    assert s[("chorus_turn_stage_seconds_sum", (g, ("stage", "first_token")))] == pytest.approx(0.24)
    assert s[("chorus_turn_stage_seconds_count", (g, ("stage", "final")))] == 2
    assert s[("chorus_turn_latency_seconds_sum", (g,))] == pytest.approx(1.0)
    assert s[("chorus_turn_latency_seconds_count", (g,))] == 1
    assert s[("chorus_turns_total", (g, ("outcome", "spoken")))] == 1
    assert s[("chorus_turns_total", (g, ("outcome", "discarded")))] == 1


async def test_wait_and_compute_per_stage_and_admission_per_guild(served):
    """A turn's trace marks (`runtime.stage_times`) become wait / compute histograms per guild and stage, its
    admission marks a counter by reason; a prefill reports its own."""
    metrics, _, get = served
    t0 = 500.0
    metrics.for_guild(GUILD).observe_turn(
        {
            "speech_end": t0,
            "stt_queued": t0 + 0.3,
            "stt_start": t0 + 0.5,
            "stt_done": t0 + 0.6,
            "llm_asked": t0 + 0.7,
            "llm_slot": t0 + 3.7,
            "first_token": t0 + 3.9,
            "holding_line": t0 + 2.2,
            "shortened": t0 + 3.7,
            "first_packet": t0 + 4.2,
        },
        "spoken",
    )
    record_stage_time("prefill", str(GUILD), 0.5, 0.25)
    s = samples((await get("/metrics"))[1])
    g = ("guild", str(GUILD))
    assert s[("chorus_stage_wait_seconds_sum", (g, ("stage", "llm_first_token")))] == pytest.approx(3.0)
    assert s[("chorus_stage_compute_seconds_sum", (g, ("stage", "llm_first_token")))] == pytest.approx(0.2)
    assert s[("chorus_stage_wait_seconds_sum", (g, ("stage", "stt")))] == pytest.approx(0.2)
    assert s[("chorus_stage_compute_seconds_sum", (g, ("stage", "prefill")))] == pytest.approx(0.25)
    assert ("chorus_stage_wait_seconds_count", (g, ("stage", "tts_first_audio"))) not in s  # not in the trace
    assert s[("chorus_admission_total", (g, ("reason", "holding_line")))] == 1
    assert s[("chorus_admission_total", (g, ("reason", "shortened")))] == 1
    assert ("chorus_admission_total", (g, ("reason", "dropped_stale"))) not in s


async def test_receive_counters_and_queue_depth_per_guild(served):
    metrics, _, get = served
    rig = Rig(asyncio.get_running_loop())
    try:
        group = make_dave_group([21], rig.conn.state.dave_session)
        member = Member(21, 2100, rig.conn.key, group[21])
        await rig.conn.speaking(21, member.ssrc)
        metrics.for_guild(GUILD).watch_receiver(lambda: rig.rx)
        metrics.for_guild(GUILD).watch_queue("captions", lambda: 3)
        rig.conn.send(member.packets(speechlike(0.2, seed=5)))
        rig.conn.send([bytes([0x81, 200]) + os.urandom(20), b"\x80\x78" + struct.pack(">HII", 1, 2, 2100) + b"x" * 30])
        assert await wait_for(lambda: rig.rx.stats["received"] == 12 and rig.rx.stats["pending"] == 0)
        status, text = await get("/metrics")
    finally:
        rig.close()
    s = samples(text)
    g = ("guild", str(GUILD))
    assert s[("chorus_receive_received_total", (g,))] == 12
    assert s[("chorus_receive_decoded_total", (g,))] == 10
    assert s[("chorus_receive_dropped_total", (g, ("reason", "rtcp")))] == 1
    assert s[("chorus_receive_dropped_total", (g, ("reason", "decrypt")))] == 1
    assert s[("chorus_queue_depth", (g, ("queue", "receive")))] == 0
    assert s[("chorus_queue_depth", (g, ("queue", "captions")))] == 3
    assert s[("chorus_voice_sessions", ())] == 1
    metrics.forget_guild(GUILD)  # the session ended: its live values go
    _, text = await get("/metrics")
    assert ("chorus_receive_received_total", (g,)) not in samples(text)


async def test_model_work_slots_and_stt_batches(served):
    metrics, _, get = served
    scheduler = ModelScheduler("exclusive")
    with scheduler.hold("llm", owner="t"):
        await asyncio.sleep(0.02)
    async with scheduler.use("tts", owner="t"):
        pass
    record_model_time("stt", 0.05)
    s = samples((await get("/metrics"))[1])
    assert s[("chorus_model_seconds_count", (("model", "llm"),))] == 1
    assert s[("chorus_model_seconds_sum", (("model", "llm"),))] >= 0.02
    assert s[("chorus_model_seconds_count", (("model", "tts"),))] == 1
    assert s[("chorus_model_wait_seconds_count", (("model", "tts"),))] == 1
    assert s[("chorus_model_seconds_count", (("model", "stt"),))] == 1


async def test_healthz(served):
    _, health, get = served
    status, text = await get("/healthz")
    assert status == 200 and '"ok": true' in text and "uptime_s" in text
    health["ok"] = False
    status, _ = await get("/healthz")
    assert status == 503


async def test_off_by_default_and_the_bot_wires_sessions(tmp_path: Path):
    settings = load_settings(
        env={"CHORUS_DATA_DIR": str(tmp_path), "CHORUS_PERSONAS_DIR": str(PROJECT_ROOT / "personas")}, env_file=None
    )
    assert settings.metrics_port == 0  # off unless CHORUS_METRICS_PORT is set
    metrics = Metrics()
    rx = types.SimpleNamespace(
        stats=types.SimpleNamespace(as_dict=lambda: {"received": 7, "decoded": 5, "pending": 1, "dropped_late": 1})
    )
    session = types.SimpleNamespace(receiver=rx)

    async def factory(bot, guild, voice_client, persona):
        return session

    bot = ChorusBot(settings, session_factory=factory, metrics=metrics)
    guild = types.SimpleNamespace(id=GUILD)
    await bot.start_voice_session(guild, types.SimpleNamespace(channel=None))
    s = samples(metrics.exposition().decode())
    assert s[("chorus_receive_decoded_total", (("guild", str(GUILD)),))] == 5
    assert s[("chorus_queue_depth", (("guild", str(GUILD)), ("queue", "receive")))] == 1
    health = bot.health()
    assert health["ok"] is False and health["voice_sessions"] == [str(GUILD)]  # not connected to Discord
    await bot.stop_voice_session(guild)
    assert ("chorus_receive_decoded_total", (("guild", str(GUILD)),)) not in samples(metrics.exposition().decode())


async def test_a_guild_that_removed_the_bot_leaves_no_series(served, tmp_path: Path):
    """on_guild_remove: every series labelled with that guild goes (histograms, counters); others stay."""
    metrics, _, get = served
    other = GUILD + 1
    for guild_id in (GUILD, other):
        metrics.for_guild(guild_id).observe_turn(
            {
                "speech_end": 10.0,
                "final": 10.4,
                "llm_asked": 10.5,
                "llm_slot": 10.6,
                "first_token": 10.7,
                "holding_line": 10.6,
                "first_packet": 11.0,
            },
            "spoken",
        )
    metrics.shed.labels(str(GUILD), "stt", "full").inc()
    settings = load_settings(
        env={"CHORUS_DATA_DIR": str(tmp_path / "data"), "CHORUS_PERSONAS_DIR": str(PROJECT_ROOT / "personas")},
        env_file=None,
    )
    bot = ChorusBot(settings, metrics=metrics)
    await bot.on_guild_remove(types.SimpleNamespace(id=GUILD))  # type: ignore[arg-type]
    s = samples((await get("/metrics"))[1])
    assert not [key for key in s if ("guild", str(GUILD)) in key[1]], s
    assert s[("chorus_turns_total", (("guild", str(other)), ("outcome", "spoken")))] == 1
    assert s[("chorus_turn_latency_seconds_count", (("guild", str(other)),))] == 1
    assert metrics.remove_guild(GUILD) == 0  # nothing left to remove
