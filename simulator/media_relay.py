"""The loopback voice server's UDP side: IP discovery, keepalive echoes, and media between the bot and members.

Packets from the bot are transport-decrypted (``aead_xchacha20_poly1305_rtpsize`` via `audio.rtp`) and handed to
every present `SimMember`; members' packets go to the bot under their own SSRC. Nothing is relayed while the bot's
voice websocket is down, nor to or from an address a fault blocked.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from audio import rtp

from .voice_protocol import KEEPALIVE_SIZE

if TYPE_CHECKING:
    from .server import LoopbackVoiceServer

log = logging.getLogger(__name__)


class MediaRelay(asyncio.DatagramProtocol):
    """The server's UDP endpoint (one socket for the bot's media, as Discord gives a client one address)."""

    def __init__(self, server: LoopbackVoiceServer) -> None:
        self.server = server
        self.port = 0
        self.blocked_udp: set[tuple[str, int]] = set()  # bot UDP addresses whose traffic is dropped both ways
        self.keepalives_echoed = 0
        self._udp: asyncio.DatagramTransport | None = None

    async def start(self, host: str) -> int:
        """Bind on ``host``; returns the UDP port."""
        self._udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self, local_addr=(host, 0), family=socket.AF_INET
        )
        self.port = self._udp.get_extra_info("sockname")[1]
        return self.port

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()

    def encrypt_for_bot(self, **kw: Any) -> bytes | None:
        """An RTP packet for the bot, transport-encrypted with its session key (None before the session has one)."""
        bot = self.server.bot
        if bot is None or bot.udp_addr is None or bot.mode is None:
            return None
        bot.nonce = (bot.nonce + 1) & 0xFFFFFFFF
        return rtp.encrypt_packet(key=bot.secret_key, nonce=bot.nonce, **kw)

    def send_rtcp_receiver_report(self, sender_ssrc: int) -> None:
        """An RTCP receiver report (PT 201) about the bot's stream, transport-encrypted the rtpsize way
        (8-byte RTCP header clear as additional data, the rest sealed, 4-byte nonce trailer)."""
        bot = self.server.bot
        if bot is None or bot.udp_addr is None or bot.mode is None:
            return
        header = struct.pack(">BBHI", 0x81, 201, 7, sender_ssrc)  # V=2, RC=1, length 7 words - 1
        block = struct.pack(">IIIIII", bot.ssrc, 0, bot.packets_from_bot & 0xFFFF, 0, 0, 0)
        bot.nonce = (bot.nonce + 1) & 0xFFFFFFFF
        trailer = struct.pack(">I", bot.nonce)
        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(block, header, trailer + bytes(20), bot.secret_key)
        self.send_to_bot(header + sealed + trailer)

    def send_to_bot(self, packet: bytes) -> None:
        bot = self.server.bot
        if (
            bot is not None
            and bot.udp_addr is not None
            and self._udp is not None
            and bot.media_live
            and bot.udp_addr not in self.blocked_udp
        ):
            self._udp.sendto(packet, bot.udp_addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._received(data, addr)
        except Exception:  # one bad packet never stops the server
            log.exception("error handling a UDP packet from %s", addr)

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr in self.blocked_udp:
            return
        if len(data) == KEEPALIVE_SIZE:  # a keepalive: echoed, as Discord's voice servers do
            self.keepalives_echoed += 1
            self._udp.sendto(data, addr)  # type: ignore[union-attr]
            return
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":  # IP discovery request
            ssrc = struct.unpack_from(">I", data, 4)[0]
            reply = bytearray(74)
            struct.pack_into(">HHI", reply, 0, 2, 70, ssrc)
            ip = addr[0].encode()
            reply[8 : 8 + len(ip)] = ip
            struct.pack_into(">H", reply, 72, addr[1])
            self._udp.sendto(bytes(reply), addr)  # type: ignore[union-attr]
            return
        bot = self.server.bot
        if bot is None or bot.mode is None:
            return
        if not bot.media_live:  # no relay for a session whose signalling is gone (until it resumes)
            bot.packets_while_down += 1
            return
        try:
            header, frame = rtp.decrypt_packet(data, bot.secret_key)
        except rtp.RtpError as exc:
            bot.bad_packets_from_bot += 1
            log.debug("bad packet from the bot: %s", exc)
            return
        if header.ssrc != bot.ssrc:
            bot.bad_packets_from_bot += 1
            return
        bot.packets_from_bot += 1
        bot.recent_frames.append(frame)
        arrival = time.monotonic()
        for member in list(self.server.members.values()):
            if member.present:
                member._on_bot_frame(bot.user_id, header.ssrc, frame, arrival)
