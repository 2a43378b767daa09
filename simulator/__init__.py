"""A loopback Discord voice server and simulated members, for tests, the demo and benchmarks.

    from simulator import LoopbackVoiceServer, connected_voice_client

    async with LoopbackVoiceServer() as server:                 # voice gateway (ws) + UDP on 127.0.0.1
        alice = await server.add_member(201, "Alice")          # own SSRC, own DAVE client (davey; dave="libdave")
        async with connected_voice_client(server) as vc:       # a real discord.VoiceClient, DAVE ready
            await alice.speak(pcm_48k_stereo_or_wav_path)      # -> the bot's UDP socket, real crypto
            vc.play(source); await alice.wait_for_audio(1.0)   # <- what the bot sent, decoded
            await alice.leave(); await alice.rejoin()
            await server.transition_dave(0)                    # DAVE off mid-stream (1: back on / re-key)
            await server.send_invalid_commit()                 # op 29 garbage -> op 31 -> group rebuilt
            await server.disconnect_client(4006)               # discord.py reconnects with a new session

Modules: `server` (the channel: members, the bot's session, injected faults), `voice_gateway` (its websocket),
`media_relay` (its UDP media), `dave_group` (the bot's MLS group), `voice_protocol` (opcodes, close codes, the bot's
session), `dave_external` (MLS external sender encodings),
`member` (`SimMember`, `NetworkKnobs`), `member_dave` (a member's DAVE client: davey or libdave), `harness` (the fake main gateway and its seams into discord.py),
`audio_files` (WAV / PCM shaping to 48 kHz stereo int16).
"""

from .harness import connected_client, connected_voice_client, voice_internals
from .member import NetworkKnobs, SimMember, SpeakReport
from .server import LoopbackVoiceServer

__all__ = [
    "LoopbackVoiceServer",
    "NetworkKnobs",
    "SimMember",
    "SpeakReport",
    "connected_client",
    "connected_voice_client",
    "voice_internals",
]
