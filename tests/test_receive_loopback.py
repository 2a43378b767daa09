"""VoiceReceiver + StreamPlayer on a real discord.py VoiceClient connected to the loopback voice server
(simulator/): real voice gateway, real UDP, real DAVE handshake and encryption, real Opus, Piper speech."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from audio.playback import StreamPlayer
from audio.receive import ListeningVoiceClient, VoiceReceiver
from audio.receive_stats import ReceiveStats
from audio.resample import resample_once
from audio.tts_engines.piper import load_piper_voice
from simulator.audio_files import to_discord_pcm
import contextlib

from simulator.harness import connected_client, connected_voice_client, voice_internals
from simulator.server import LoopbackVoiceServer
from tests.fixtures_simulator import each_member_dave, best_correlation

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

ALICE, BOB, CAROL = 201, 202, 203
SENTENCES = {
    ALICE: "The quick brown fox jumps over the lazy dog near the river bank.",
    BOB: "Seven purple elephants were dancing slowly under a silver moon.",
    CAROL: "Please remember to water the tomatoes before the weekend begins.",
}


@pytest.fixture(scope="module")
def speech() -> dict[int, tuple[np.ndarray, int]]:
    """Piper-synthesized sentences: user id -> (float32 mono, rate)."""
    voice = load_piper_voice()
    out = {}
    for uid, text in SENTENCES.items():
        chunks = list(voice.synthesize(text))
        out[uid] = (np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), chunks[0].sample_rate)
    return out


def reference_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """What a member sends, as the bot should hear it: the simulator's 48 kHz conversion, then mono 16 kHz."""
    pcm48 = to_discord_pcm(audio, rate).astype(np.float32) / 32768.0
    return resample_once(pcm48.mean(axis=1), 48_000, 16_000)


def corr16(received: np.ndarray, ref: np.ndarray) -> float:
    """Peak normalized cross-correlation, via the simulator's helper (which searches received-later lags only):
    two frames of zeros in front cover a stream that starts a packet or two into the reference."""
    padded = np.concatenate([np.zeros(640, np.float32), received])
    return best_correlation(ref[:, None], padded[:, None], max_lag=16_000)


@contextlib.asynccontextmanager
async def listening_voice_client(server: LoopbackVoiceServer):
    """Like the harness's connected_voice_client, but connects with ``cls=ListeningVoiceClient``."""
    async with connected_client(server) as client:
        channel = client.get_channel(server.channel_id)
        vc = await channel.connect(cls=ListeningVoiceClient, timeout=30, reconnect=True)
        await server.wait_connected(30)
        await server.wait_dave_settled(30)
        yield vc


class Sink:
    def __init__(self) -> None:
        self.frames: dict[int, list] = {}
        self.left: list[int] = []

    def on_frame(self, f) -> None:
        self.frames.setdefault(f.user_id, []).append(f)

    def on_left(self, uid: int) -> None:
        self.left.append(uid)

    def audio(self, uid: int, start: int = 0) -> np.ndarray:
        fr = self.frames.get(uid, [])[start:]
        return np.concatenate([f.pcm for f in fr]) if fr else np.zeros(0, np.float32)

    def count(self, uid: int) -> int:
        return len(self.frames.get(uid, []))


CURRENT: dict[str, object] = {}  # the receiver under test, for failure messages


async def until(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            rx = CURRENT.get("rx")
            stats = {k: v for k, v in rx.stats.as_dict().items() if v} if isinstance(rx, VoiceReceiver) else None
            raise AssertionError(f"timed out waiting; receiver stats: {stats}")
        await asyncio.sleep(0.05)


def start_receiver(vc) -> tuple[VoiceReceiver, Sink]:
    sink = Sink()
    rx = VoiceReceiver(vc, on_frame=sink.on_frame, on_member_left=sink.on_left)
    rx.start()
    CURRENT["rx"] = rx
    return rx, sink


async def settle(rx: VoiceReceiver) -> dict[str, int]:
    await until(lambda: rx.stats["pending"] == 0, 10)
    await asyncio.sleep(0.1)
    d = rx.stats.as_dict()
    assert ReceiveStats.balance(d) == 0, d
    assert d["dropped_internal"] == 0, d
    return d


@each_member_dave
async def test_three_overlapping_speakers_under_dave_and_the_bot_speaks_back(speech, member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        members = {
            uid: await server.add_member(uid, name) for uid, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol"))
        }
        async with connected_voice_client(server, dave=True) as vc:
            assert voice_internals(vc).can_encrypt
            rx, sink = start_receiver(vc)
            t0 = time.monotonic() + 0.2
            reports = await asyncio.gather(
                *(
                    members[uid].speak(speech[uid][0], at=t0 + 0.5 * i, rate=speech[uid][1])
                    for i, uid in enumerate((ALICE, BOB, CAROL))
                )
            )
            for uid, rep in zip((ALICE, BOB, CAROL), reports):
                await until(lambda uid=uid, rep=rep: sink.count(uid) >= rep.frames)
            d = await settle(rx)
            assert d["decoded"] == sum(r.frames for r in reports), d
            assert d["dropped_dave_no_decryptor"] == d["dropped_dave_error"] == d["dropped_decrypt"] == 0
            refs = {uid: reference_16k(*speech[uid]) for uid in SENTENCES}
            for uid in SENTENCES:
                assert corr16(sink.audio(uid), refs[uid]) >= 0.9, uid
                for other in SENTENCES:
                    if other != uid:
                        assert corr16(sink.audio(uid), refs[other]) < 0.3, (uid, other)
            assert vc.user.id not in sink.frames  # never our own voice

            # the bot answers through StreamPlayer; every member hears it, DAVE-decrypted and decoded
            firsts: list[float] = []
            player = StreamPlayer(on_first_packet=firsts.append)
            vc.play(player)
            audio, rate = speech[BOB]
            for i in range(0, audio.size, 4410):  # TTS-like chunks
                player.feed(audio[i : i + 4410], rate)
            player.end_of_utterance()
            heard = await members[ALICE].wait_for_audio(audio.size / rate - 0.1)
            await until(lambda: not player.is_playing_audio, 15)
            vc.stop()
            ref48 = resample_once(audio, rate, 48_000)
            ref48 = np.stack([ref48, ref48], axis=1)
            assert best_correlation(ref48, members[ALICE].received_pcm(dtype="float32"), max_lag=96_000) >= 0.9
            assert members[ALICE].stats["dave_decrypted"] > 0 and members[ALICE].stats["dave_failed"] == 0
            assert len(firsts) == 1 and abs(player.seconds_played - audio.size / rate) < 0.05
            assert len(heard) > 0
            rx.stop()


async def test_dave_off(speech):
    async with LoopbackVoiceServer(dave_protocol_version=0) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server, dave=False) as vc:
            assert voice_internals(vc).dave_protocol_version == 0
            rx, sink = start_receiver(vc)
            rep = await alice.speak(speech[ALICE][0], rate=speech[ALICE][1])
            assert rep.dave_encrypted == 0
            await until(lambda: sink.count(ALICE) >= rep.frames)
            d = await settle(rx)
            assert d["decoded"] == rep.frames, (d, rep)
            assert corr16(sink.audio(ALICE), reference_16k(*speech[ALICE])) >= 0.9
            rx.stop()


@each_member_dave
async def test_dave_transitions_mid_stream(speech, member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server, dave=True) as vc:
            vi = voice_internals(vc)
            rx, sink = start_receiver(vc)
            audio, rate = speech[CAROL]
            long = np.concatenate([audio, audio])  # ~7 s
            speaking = asyncio.create_task(alice.speak(long, rate=rate))
            await asyncio.sleep(1.5)
            await server.transition_dave(0)  # DAVE off mid-sentence
            await until(lambda: vi.dave_protocol_version == 0, 5)
            await asyncio.sleep(1.5)
            await server.transition_dave(1)  # and back on: a new MLS group
            await until(lambda: vi.can_encrypt, 5)
            rep = await speaking
            await until(lambda: rx.stats["received"] >= rep.sent, 10)
            d = await settle(rx)
            assert rep.plain > 0 and rep.dave_encrypted > 0
            lost = rep.frames - d["decoded"]
            assert lost <= 10, d  # only frames in flight at a switch
            assert d["dropped_opus"] == 0
            ref = reference_16k(long, rate)
            assert corr16(sink.audio(ALICE), ref) >= 0.85
            rx.stop()


@each_member_dave
async def test_leave_and_rejoin_with_a_new_ssrc(speech, member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        bob = await server.add_member(BOB, "Bob")
        async with listening_voice_client(server) as vc:
            assert isinstance(vc, ListeningVoiceClient)
            rx, sink = start_receiver(vc)  # after connect: the SSRCs announced during connect were recorded
            old_ssrc = alice.ssrc
            assert rx.user_for_ssrc(old_ssrc) == ALICE and rx.user_for_ssrc(bob.ssrc) == BOB
            await alice.leave()
            await server.wait_dave_settled()
            await until(lambda: sink.left == [ALICE], 5)
            assert rx.user_for_ssrc(old_ssrc) is None
            await alice.rejoin()
            await server.wait_dave_settled()
            assert alice.ssrc != old_ssrc
            audio, rate = speech[ALICE]
            rep_a, rep_b = await asyncio.gather(
                alice.speak(audio, rate=rate), bob.speak(speech[BOB][0], rate=speech[BOB][1])
            )
            await until(lambda: sink.count(ALICE) >= rep_a.frames and sink.count(BOB) >= rep_b.frames)
            assert rx.user_for_ssrc(alice.ssrc) == ALICE
            await settle(rx)
            assert corr16(sink.audio(ALICE), reference_16k(audio, rate)) >= 0.9
            assert corr16(sink.audio(BOB), reference_16k(*speech[BOB])) >= 0.9
            rx.stop()


@each_member_dave
async def test_server_closes_the_socket_and_receive_survives_the_reconnect(speech, member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server, dave=True) as vc:
            rx, sink = start_receiver(vc)
            audio, rate = speech[ALICE]
            rep1 = await alice.speak(audio[:rate], rate=rate)
            await until(lambda: sink.count(ALICE) >= rep1.frames)
            first = server.bot
            await server.disconnect_client(4006)
            await server.wait_for(lambda: server.connections == 2 and server.bot is not first, 40, "a new session")
            await server.wait_connected(40)
            await server.wait_dave_settled(40)
            await asyncio.wait_for(vc._connection.wait_async(), 40)
            assert voice_internals(vc).secret_key != first.secret_key
            before = sink.count(ALICE)
            rep2 = await alice.speak(audio, rate=rate)
            await until(lambda: sink.count(ALICE) >= before + rep2.frames, 20)
            d = await settle(rx)
            assert corr16(sink.audio(ALICE, start=before), reference_16k(audio, rate)) >= 0.9
            assert d["dropped_decrypt"] <= 2, d
            rx.stop()


@each_member_dave
async def test_lossy_reordering_network_with_padding_and_extensions(speech, member_dave):
    from simulator.member import NetworkKnobs

    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        knobs = NetworkKnobs(loss=0.04, reorder=0.08, padding=0.3, extension=0.5, seed=7)
        alice = await server.add_member(ALICE, "Alice", knobs=knobs)
        async with connected_voice_client(server, dave=True) as vc:
            rx, sink = start_receiver(vc)
            audio, rate = speech[ALICE]
            rep = await alice.speak(audio, rate=rate)
            assert rep.dropped > 0 and rep.reordered > 0
            await until(lambda: rx.stats["received"] >= rep.sent, 10)
            d = await settle(rx)
            # every packet opened (padding/extensions); davey refuses a frame older than the first one it
            # decrypted from a sender, so a reordered *first* packet is lost at the DAVE step
            assert d["decoded"] + d["dropped_dave_error"] == rep.sent and d["dropped_dave_error"] <= 1, d
            assert d["dropped_decrypt"] == 0
            frames = sink.frames[ALICE]
            concealed = sum(f.concealed for f in frames)
            assert concealed == d["plc_frames"] + d["fec_frames"] > 0
            assert abs(len(frames) - rep.frames) <= 3  # lost packets became concealed 20 ms frames
            assert corr16(sink.audio(ALICE), reference_16k(audio, rate)) >= 0.85
            rx.stop()
