"""Fails loudly when discord.py / davey move the private seams audio.receive and audio.playback rely on."""

from __future__ import annotations

import inspect

import davey
import discord
from discord import opus
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import SocketReader, VoiceConnectionState


def test_pinned_versions():
    assert discord.__version__ == "2.7.1", "audio/receive.py leans on discord.py 2.7.1 internals: re-check them"
    assert davey.__version__ == "0.1.7"


def test_voice_connection_state_seams():
    src = inspect.getsource(VoiceConnectionState.__init__)
    for attr in (
        "self.hook",
        "self.secret_key",
        "self.ssrc",
        "self.mode",
        "self.socket",
        "self.ws",
        "self.dave_session",
        "self.dave_protocol_version",
        "self._socket_reader",
    ):
        assert attr in src, attr
    assert callable(VoiceConnectionState.add_socket_listener)
    assert callable(VoiceConnectionState.remove_socket_listener)
    # new websockets get the connection's hook (reconnects keep our gateway hook)
    assert "hook=self.hook" in inspect.getsource(VoiceConnectionState._connect_websocket)
    # the UDP socket is (re)created and the reader resumed on connect
    assert "_socket_reader.resume" in inspect.getsource(VoiceConnectionState._create_socket)


def test_socket_reader_calls_listeners_with_raw_datagrams():
    src = inspect.getsource(SocketReader._do_run)
    assert "recv(2048)" in src and "cb(data)" in src
    assert callable(SocketReader.register) and callable(SocketReader.unregister)


def test_voice_websocket_hook_and_ops():
    ws_src = inspect.getsource(DiscordVoiceWebSocket.received_message)
    assert "await self._hook(self, msg)" in ws_src
    assert "self._connection.mode = data['mode']" in ws_src
    init_src = inspect.getsource(DiscordVoiceWebSocket.__init__)
    assert "self._hook = hook" in init_src
    assert DiscordVoiceWebSocket.SPEAKING == 5
    assert DiscordVoiceWebSocket.CLIENTS_CONNECT == 11
    assert DiscordVoiceWebSocket.CLIENT_DISCONNECT == 13
    assert DiscordVoiceWebSocket.READY == 2


def test_voice_client_transport_and_player_contract():
    assert discord.VoiceClient.supported_modes[0] == "aead_xchacha20_poly1305_rtpsize"
    src = inspect.getsource(discord.VoiceClient._encrypt_aead_xchacha20_poly1305_rtpsize)
    assert "nonce[:4]" in src and "bytes(header)" in src
    assert "_connection" in inspect.getsource(discord.VoiceClient.__init__)
    # AudioPlayer pulls 20 ms frames from read() on its own thread and encodes unless is_opus()
    player_src = inspect.getsource(discord.player.AudioPlayer._do_run)
    assert "self.source.read()" in player_src
    assert discord.opus.Encoder.FRAME_SIZE == 3840


def test_opus_and_davey_api():
    assert inspect.signature(opus.Decoder.decode).parameters.keys() >= {"data", "fec"}
    assert opus.Decoder.SAMPLING_RATE == 48000 and opus.Decoder.CHANNELS == 2
    for name in ("decrypt", "encrypt_opus", "ready", "can_passthrough", "set_passthrough_mode"):
        assert hasattr(davey.DaveSession, name), name
    assert davey.MediaType.audio is not None


def test_reader_pause_is_followed_by_closing_the_socket():
    """audio.receive wakes the SocketReader by shutting the UDP socket down when discord.py pauses/stops it; that is
    only safe while every pause()/stop() call site closes the socket right after."""
    for fn in (VoiceConnectionState.disconnect, VoiceConnectionState.soft_disconnect):
        src = inspect.getsource(fn)
        assert "self._socket_reader.pause()" in src and "self.socket.close()" in src
        assert src.index("self._socket_reader.pause()") < src.index("self.socket.close()")
    assert "select.select([self.state.socket], [], [], 30)" in inspect.getsource(SocketReader._do_run)


def test_libopus_binding_used_by_the_fast_decoder():
    """audio.opus_streams.PcmDecoder calls the libopus functions discord.py binds (argtypes + errcheck)."""
    assert opus.Decoder.get_opus_version()  # loads libopus
    for name in ("opus_decoder_create", "opus_decode", "opus_decoder_ctl", "opus_decoder_destroy"):
        assert callable(getattr(opus._lib, name)), name
    assert opus.CTL_LAST_PACKET_DURATION == 4039
    assert opus.c_int16_ptr is not None
    assert any(f[0] == "opus_decode" and f[3] is opus._err_lt for f in opus.exported_functions)
