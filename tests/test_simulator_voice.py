"""The loopback voice server against a real discord.py 2.7.1 VoiceClient: handshake, DAVE, audio both ways,
DAVE off / transitions, member leave + rejoin, invalid commit, server-side disconnect -> reconnect."""

from __future__ import annotations

import asyncio

import discord
import pytest

from simulator.harness import PINNED_DISCORD_PY, connected_voice_client, voice_internals
from simulator.member import NetworkKnobs
from simulator.server import LoopbackVoiceServer
from tests.fixtures_simulator import each_member_dave, BotSocketTap, best_correlation, chirp, pcm_source, play_and_wait

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

ALICE, BOB = 201, 202


def _record_ops(vc: discord.VoiceClient) -> list[dict]:
    """Every JSON voice-gateway message the bot receives from now on (discord.py's per-websocket hook)."""
    seen: list[dict] = []

    async def hook(_ws, msg):
        seen.append(msg)

    vc.ws._hook = hook
    return seen


def assert_leaves_follow_the_group(server: LoopbackVoiceServer) -> None:
    """The server's own leaf table (it needs it for Remove proposals) agrees with davey members' own view."""
    for m in server.members.values():
        if m.in_group and m.dave.impl == "davey":
            assert m.leaf_index == m.dave.own_leaf_index, m


async def test_private_seams_are_where_we_expect():
    # Fails loudly if a discord.py upgrade moves what the simulator and the receive path lean on.
    assert discord.__version__ == PINNED_DISCORD_PY
    from discord.gateway import DiscordVoiceWebSocket
    from discord.voice_state import VoiceConnectionState

    for name in ("add_socket_listener", "remove_socket_listener", "reinit_dave_session", "can_encrypt"):
        assert hasattr(VoiceConnectionState, name), name
    assert DiscordVoiceWebSocket.MLS_PROPOSALS == 27 and DiscordVoiceWebSocket.CLIENT_DISCONNECT == 13
    assert "aead_xchacha20_poly1305_rtpsize" in discord.VoiceClient.supported_modes


@each_member_dave
async def test_handshake_and_bot_audio_reaches_member_under_dave(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            assert vc.is_connected() and vi.dave_protocol_version == 1
            assert vi.dave_session.ready and vi.can_encrypt
            assert sorted(vi.dave_session.get_user_ids()) == sorted([str(vc.user.id), str(ALICE)])
            assert vi.dave_session.voice_privacy_code
            assert vc.guild.get_member(ALICE).name == "Alice"  # the fake gateway fed her voice state

            ref = chirp(1.0)
            await play_and_wait(vc, ref)
            heard = await alice.wait_for_audio(0.95)
            frames = list(server.bot.recent_frames)
            voiced = [f for f in frames if f != b"\xf8\xff\xfe"]
            assert voiced and all(f.endswith(b"\xfa\xfa") for f in voiced)  # the DAVE footer
            assert alice.stats["dave_decrypted"] >= 45 and alice.stats["dave_failed"] == 0
            assert best_correlation(ref, heard) > 0.9
            assert len(alice.utterance_starts()) >= 1
        assert server.bot.ws is None  # left cleanly (no 10 s wait: the fake completed the disconnect)


@each_member_dave
async def test_member_speech_decrypts_on_the_bot_socket(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        knobs = NetworkKnobs(extension=0.5, padding=0.3)
        alice = await server.add_member(ALICE, "Alice", knobs=knobs)
        bob = await server.add_member(BOB, "Bob")
        async with connected_voice_client(server) as vc:
            tap = BotSocketTap(vc)
            ref_a, ref_b = chirp(1.0), chirp(1.0, 3000.0, 500.0)
            start = asyncio.get_running_loop().time()
            rep_a, rep_b = await asyncio.gather(alice.speak(ref_a), bob.speak(ref_b))  # at the same time
            assert asyncio.get_running_loop().time() - start < 2.5
            assert rep_a.dave_encrypted == 50 and rep_a.plain == 0
            await tap.wait_packets(alice.ssrc, rep_a.sent)
            await tap.wait_packets(bob.ssrc, rep_b.sent)
            tap.close()
            pcm_a, stats_a = tap.decode_from(alice.ssrc, ALICE)
            pcm_b, _ = tap.decode_from(bob.ssrc, BOB)
            assert stats_a["dave"] == 50 and stats_a["silence"] == 5
            assert stats_a["extension"] > 0 and stats_a["padding"] > 0
            assert best_correlation(ref_a, pcm_a) > 0.9
            assert best_correlation(ref_b, pcm_b) > 0.9
            assert best_correlation(ref_a, pcm_b) < 0.5  # the streams are not mixed up


async def test_dave_off():
    async with LoopbackVoiceServer(dave_protocol_version=0) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            assert vi.dave_protocol_version == 0 and not vi.can_encrypt
            tap = BotSocketTap(vc)
            ref = chirp(0.6)
            rep = await alice.speak(ref)
            assert rep.dave_encrypted == 0
            await play_and_wait(vc, ref)
            await alice.wait_for_audio(0.55)
            await tap.wait_packets(alice.ssrc, rep.sent)
            pcm, stats = tap.decode_from(alice.ssrc, ALICE)
            assert stats["plain"] == 30 and stats["dave"] == 0
            assert best_correlation(ref, pcm) > 0.9
            assert alice.stats["plain"] > 0 and alice.stats["dave_decrypted"] == 0
            assert best_correlation(ref, alice.received_pcm()) > 0.9


@each_member_dave
async def test_transition_off_and_back_on_mid_stream(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            code_before = vi.dave_session.voice_privacy_code
            ops = _record_ops(vc)
            ref = chirp(3.0)
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            vc.play(
                pcm_source(ref), after=lambda e: loop.call_soon_threadsafe(lambda: done.done() or done.set_result(e))
            )
            await alice.wait_for_audio(0.5)
            await server.transition_dave(0)  # 21 -> 23 -> 22
            await alice.wait_for_audio(1.2)
            assert vi.dave_protocol_version == 0 and not vi.can_encrypt
            assert server.bot.recent_frames[-1][-2:] != b"\xfa\xfa"  # plain Opus now
            await server.transition_dave(1)  # 24 -> 26 -> 25, 27, 28, 29, 23, 22
            assert vi.dave_protocol_version == 1 and vi.can_encrypt
            assert await asyncio.wait_for(done, 30) is None
            assert {m["op"] for m in ops} >= {21, 22, 24}
            heard = alice.received_pcm()
            assert alice.stats["dave_failed"] <= 3  # at most frames in flight at a switch
            assert best_correlation(ref, heard, max_lag=96_000) > 0.8
            assert vi.dave_session.voice_privacy_code != code_before  # a new group

            # re-key at version 1 (new group, same members); audio flows encrypted afterwards
            epoch_tid = await server.transition_dave(1)
            assert epoch_tid == 0 and vi.can_encrypt
            alice.clear_received()
            await play_and_wait(vc, chirp(0.5))
            await alice.wait_for_audio(0.45)
            assert server.bot.recent_frames[-10][-2:] == b"\xfa\xfa"


@each_member_dave
async def test_member_leave_and_rejoin(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        bob = await server.add_member(BOB, "Bob")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            ops = _record_ops(vc)
            old_ssrc = alice.ssrc
            await alice.leave()
            await server.wait_dave_settled()
            assert any(m["op"] == 13 and m["d"]["user_id"] == str(ALICE) for m in ops)
            assert str(ALICE) not in vi.dave_session.get_user_ids()
            assert vc.channel.voice_states.get(ALICE) is None
            with pytest.raises(RuntimeError):
                await alice.speak(chirp(0.1))

            await alice.rejoin()
            await server.wait_dave_settled()
            assert alice.ssrc != old_ssrc
            assert any(m["op"] == 11 and str(ALICE) in m["d"]["user_ids"] for m in ops)
            assert any(m["op"] == 5 and m["d"]["ssrc"] == alice.ssrc for m in ops)
            assert sorted(vi.dave_session.get_user_ids()) == sorted([str(vc.user.id), str(ALICE), str(BOB)])
            assert alice.dave.impl == bob.dave.impl == member_dave
            assert_leaves_follow_the_group(server)

            tap = BotSocketTap(vc)
            ref = chirp(0.6)
            rep = await alice.speak(ref)
            await tap.wait_packets(alice.ssrc, rep.sent)
            pcm, stats = tap.decode_from(alice.ssrc, ALICE)
            assert stats["dave"] == 30 and best_correlation(ref, pcm) > 0.9
            await play_and_wait(vc, ref)
            await bob.wait_for_audio(0.55)
            await alice.wait_for_audio(0.55)
            assert bob.stats["dave_failed"] == 0


@each_member_dave
async def test_invalid_commit_rebuilds_the_group(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            tid = await server.send_invalid_commit()
            assert server.bot.invalid_commits == [tid]
            assert server.bot.key_packages == 2
            assert vi.can_encrypt and str(ALICE) in vi.dave_session.get_user_ids()
            await play_and_wait(vc, chirp(0.5))
            await alice.wait_for_audio(0.45)
            assert alice.stats["dave_decrypted"] > 0


@each_member_dave
async def test_server_disconnect_then_client_reconnects(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            first = server.bot
            await server.disconnect_client(4006)
            await server.wait_for(lambda: server.connections == 2 and server.bot is not first, 40, "a new session")
            await server.wait_connected(40)
            await server.wait_dave_settled(40)
            await asyncio.wait_for(vc._connection.wait_async(), 40)
            vi = voice_internals(vc)
            assert vc.is_connected() and vi.can_encrypt and vi.ssrc == server.bot.ssrc
            assert vi.secret_key == server.bot.secret_key != first.secret_key
            await play_and_wait(vc, chirp(0.5))
            await alice.wait_for_audio(0.45)
            tap = BotSocketTap(vc)
            rep = await alice.speak(chirp(0.3))
            await tap.wait_packets(alice.ssrc, rep.sent)
            _, stats = tap.decode_from(alice.ssrc, ALICE)
            assert stats["dave"] == 15


@each_member_dave
async def test_bot_joins_existing_group_by_welcome(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave, bot_joins_by_welcome=True) as server:
        alice = await server.add_member(ALICE, "Alice")
        bob = await server.add_member(BOB, "Bob")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            assert server.bot.welcomes == 1 and server.bot.commits == 0  # op 30, no commit from the bot
            assert vi.can_encrypt
            assert sorted(vi.dave_session.get_user_ids()) == sorted([str(vc.user.id), str(ALICE), str(BOB)])
            tap = BotSocketTap(vc)
            ref = chirp(0.6)
            rep = await bob.speak(ref)
            await tap.wait_packets(bob.ssrc, rep.sent)
            pcm, stats = tap.decode_from(bob.ssrc, BOB)
            assert stats["dave"] == 30 and best_correlation(ref, pcm) > 0.9
            await play_and_wait(vc, ref)
            await alice.wait_for_audio(0.55)
            assert alice.stats["dave_decrypted"] > 0 and alice.stats["dave_failed"] == 0
            # later membership changes: the bot commits as usual
            await alice.leave()
            await server.wait_dave_settled()
            assert server.bot.commits == 1 and str(ALICE) not in vi.dave_session.get_user_ids()


@each_member_dave
async def test_network_knobs_loss_and_reorder(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        knobs = NetworkKnobs(loss=0.2, reorder=0.2, rtcp_every=10, seed=7)
        alice = await server.add_member(ALICE, "Alice", knobs=knobs)
        async with connected_voice_client(server) as vc:
            tap = BotSocketTap(vc)
            rep = await alice.speak(chirp(1.0))
            assert rep.dropped > 0 and rep.reordered > 0 and rep.sent == rep.frames - rep.dropped
            assert rep.rtcp == rep.sent // 10
            from audio import rtp

            await tap.wait_total(rep.sent + rep.rtcp)
            rtcp = [p for p in tap.packets if rtp.is_rtcp(p)]
            assert len(rtcp) == rep.rtcp and all(p[1] == 201 for p in rtcp)
            media = [p for p in tap.packets if not rtp.is_rtcp(p)]
            seqs = [rtp.parse_header(p).sequence for p in media if rtp.parse_header(p).ssrc == alice.ssrc]
            assert len(seqs) == rep.sent and len(set(seqs)) == rep.sent
            assert any(b < a for a, b in zip(seqs, seqs[1:]))  # out of order somewhere
            assert max(seqs) - min(seqs) + 1 > len(seqs)  # gaps


@each_member_dave
async def test_speak_at_a_scheduled_time(member_dave):
    import time

    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server):
            at = time.monotonic() + 0.3
            rep = await alice.speak(chirp(0.2), at=at)
            assert rep.start == at and time.monotonic() >= at + 0.2


async def test_client_without_dave_is_refused_when_required():
    import aiohttp

    async with LoopbackVoiceServer(require_dave=True) as server:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://{server.endpoint}/?v=8") as ws:
                hello = await ws.receive_json()
                assert hello["op"] == 8
                await ws.send_json(
                    {
                        "op": 0,
                        "d": {
                            "server_id": str(server.guild_id),
                            "user_id": "1",
                            "session_id": "s",
                            "token": server.token,
                            "max_dave_protocol_version": 0,
                        },
                    }
                )
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4017


@each_member_dave
async def test_speaking_can_race_the_media(member_dave):
    async with LoopbackVoiceServer(
        member_dave=member_dave, announce_ssrcs_on_connect=False, speaking_after_packets=10
    ) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            ops: list[dict] = []
            tap = BotSocketTap(vc)
            first_op5_at_packets: list[int] = []

            async def hook(_ws, msg):
                ops.append(msg)
                if msg["op"] == 5:
                    first_op5_at_packets.append(len(tap.packets))

            vc.ws._hook = hook
            rep = await alice.speak(chirp(0.4))
            await tap.wait_packets(alice.ssrc, rep.sent)
            speaking = [m for m in ops if m["op"] == 5]
            assert len(speaking) == 1 and speaking[0]["d"] == {"user_id": str(ALICE), "ssrc": alice.ssrc, "speaking": 1}
            assert first_op5_at_packets[0] >= 1  # media arrived before the SSRC was announced


@each_member_dave
async def test_a_failed_mls_step_restarts_the_group(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            server.step_timeout = 1e-4  # the bot cannot commit Bob's Add in time: the step fails
            bob = await server.add_member(BOB, "Bob")
            assert server.dave.errors and "no commit" in server.dave.errors[0]
            server.step_timeout = 20.0
            await server.wait_for(lambda: server.bot.key_packages >= 2, 20, "the bot's fresh key package (op 24)")
            await server.wait_dave_settled()
            assert sorted(vi.dave_session.get_user_ids()) == sorted([str(vc.user.id), str(ALICE), str(BOB)])
            await play_and_wait(vc, chirp(0.5))
            await alice.wait_for_audio(0.45)
            await bob.wait_for_audio(0.45)
            assert vc.is_connected() and not vc._connection._runner.done()  # discord.py's poller survived


@each_member_dave
async def test_bot_first_then_members_come_and_all_go(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            assert not vi.can_encrypt  # alone: a pending group, nothing to encrypt for
            alice = await server.add_member(ALICE, "Alice")  # the bot creates the group now
            assert vi.can_encrypt and server.dave.group_epoch == 1
            await alice.leave()  # the bot is alone in an established group
            assert server.dave.group_epoch == 2 and vi.dave_session.get_user_ids() == [str(vc.user.id)]
            await alice.rejoin()
            assert server.dave.group_epoch == 3
            await play_and_wait(vc, chirp(0.4))
            await alice.wait_for_audio(0.35)
            assert alice.stats["dave_failed"] == 0 and alice.stats["dave_decrypted"] > 0


@each_member_dave
async def test_bot_leaves_and_joins_again(member_dave):
    async with LoopbackVoiceServer(member_dave=member_dave) as server:
        alice = await server.add_member(ALICE, "Alice")
        for _ in range(2):
            async with connected_voice_client(server) as vc:
                alice.clear_received()
                await play_and_wait(vc, chirp(0.3))
                await alice.wait_for_audio(0.25)
        assert server.connections == 2 and alice.stats["dave_failed"] == 0


async def test_davey_and_libdave_members_in_one_call():
    """Members on either implementation in one MLS group: the bot hears both, both hear the bot, through leaves
    and joins (the group's commits and welcomes cross implementations)."""
    async with LoopbackVoiceServer() as server:
        alice = await server.add_member(ALICE, "Alice", dave="davey")
        bob = await server.add_member(BOB, "Bob", dave="libdave")
        async with connected_voice_client(server) as vc:
            vi = voice_internals(vc)
            carol = await server.add_member(203, "Carol", dave="libdave")
            await alice.leave()
            await alice.rejoin()
            await server.wait_dave_settled()
            assert_leaves_follow_the_group(server)
            assert sorted(vi.dave_session.get_user_ids()) == sorted(str(u) for u in (vc.user.id, ALICE, BOB, 203))
            tap = BotSocketTap(vc)
            ref_b, ref_a = chirp(0.6), chirp(0.6, 3000.0, 400.0)
            rep_b, rep_a = await asyncio.gather(bob.speak(ref_b), alice.speak(ref_a))
            await tap.wait_packets(bob.ssrc, rep_b.sent)
            await tap.wait_packets(alice.ssrc, rep_a.sent)
            pcm_b, stats_b = tap.decode_from(bob.ssrc, BOB)
            pcm_a, stats_a = tap.decode_from(alice.ssrc, ALICE)
            assert stats_b["dave"] == stats_a["dave"] == 30
            assert best_correlation(ref_b, pcm_b) > 0.9 and best_correlation(ref_a, pcm_a) > 0.9
            ref = chirp(0.5)
            await play_and_wait(vc, ref)
            for m in (alice, bob, carol):
                heard = await m.wait_for_audio(0.45)
                assert m.stats["dave_failed"] == 0 and best_correlation(ref, heard) > 0.9, m
