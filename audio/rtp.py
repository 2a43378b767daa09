"""RTP framing and Discord's transport encryption (``aead_xchacha20_poly1305_rtpsize``).

Layout of one Discord voice packet in this mode::

    fixed header (12) | CSRCs (4 x cc) | [ext preamble (4): 0xBEDE, length in words]   <- clear, AAD
    ciphertext of: [ext body (4 x length)] | payload | [RTP padding, last byte = count] <- encrypted
    Poly1305 tag (16, part of the AEAD output) | nonce (4, big-endian counter)

The 24-byte XChaCha20 nonce is the trailing 4 bytes followed by 20 zero bytes (that is what discord.py's
``VoiceClient._encrypt_aead_xchacha20_poly1305_rtpsize`` sends, so ``decrypt_packet`` opens the bot's own
packets too).
"""

from __future__ import annotations

from typing import Final

import struct
from dataclasses import dataclass

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

MODE: Final = "aead_xchacha20_poly1305_rtpsize"
OPUS_PT = 0x78
EXTENSION_PROFILE = 0xBEDE
RTP_VERSION = 2
FIXED_HEADER_LEN = 12
NONCE_TRAILER_LEN = 4
TAG_LEN = 16
KEY_LEN = 32
RTCP_PACKET_TYPES = range(200, 205)  # SR, RR, SDES, BYE, APP (the whole second byte)

_FIXED = struct.Struct(">BBHII")
_PREAMBLE = struct.Struct(">HH")
_NONCE_PAD = bytes(20)


class RtpError(ValueError):
    """A packet that is not valid RTP, or that fails transport decryption."""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_len: int  # 12 + 4*cc (+4 for the extension preamble when X is set): the clear, authenticated part
    extension_words: int = 0  # extension body length in 32-bit words (the body itself is encrypted)
    extension_profile: int = 0


def is_rtcp(packet: bytes) -> bool:
    """True for RTCP (packet type 200-204 in the second byte, where RTP keeps marker + payload type)."""
    return len(packet) >= 2 and packet[1] in RTCP_PACKET_TYPES


def parse_header(packet: bytes) -> RtpHeader:
    """Parse the clear part of an RTP packet; raises `RtpError` when it is truncated or not version 2."""
    n = len(packet)
    if n < FIXED_HEADER_LEN:
        raise RtpError(f"packet too short for an RTP header ({n} bytes)")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(packet, 0)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected 2")
    cc = b0 & 0x0F
    extension = bool(b0 & 0x10)
    header_len = FIXED_HEADER_LEN + 4 * cc
    words = profile = 0
    if extension:
        if n < header_len + 4:
            raise RtpError(f"packet too short for {cc} CSRCs and an extension preamble ({n} bytes)")
        profile, words = _PREAMBLE.unpack_from(packet, header_len)
        header_len += 4
    elif n < header_len:
        raise RtpError(f"packet too short for {cc} CSRCs ({n} bytes)")
    return RtpHeader(
        version=version,
        padding=bool(b0 & 0x20),
        extension=extension,
        csrc_count=cc,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        header_len=header_len,
        extension_words=words,
        extension_profile=profile,
    )


def _nonce(trailer: bytes) -> bytes:
    return trailer + _NONCE_PAD


def encrypt_packet(
    *,
    key: bytes,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    nonce: int,
    payload_type: int = OPUS_PT,
    extension: bytes | None = None,
    padding: int = 0,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
) -> bytes:
    """Build an encrypted packet the way Discord's voice server sends it.

    ``extension`` is the extension BODY (a multiple of 4 bytes, profile 0xBEDE); it is encrypted with the
    payload while its 4-byte preamble stays in the clear as additional data. ``padding`` > 0 sets the P bit
    and appends that many bytes (the last one holding the count) before encryption.
    """
    if len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes")
    if not 0 <= padding <= 255:
        raise ValueError("padding must be 0..255 bytes")
    if len(csrcs) > 15:
        raise ValueError("at most 15 CSRCs")
    if extension is not None and len(extension) % 4:
        raise ValueError("extension body must be a whole number of 32-bit words")
    b0 = 0x80 | len(csrcs)
    if padding:
        b0 |= 0x20
    if extension is not None:
        b0 |= 0x10
    b1 = (0x80 if marker else 0) | (payload_type & 0x7F)
    header = bytearray(_FIXED.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF))
    for csrc in csrcs:
        header += struct.pack(">I", csrc & 0xFFFFFFFF)
    plain = bytearray()
    if extension is not None:
        header += _PREAMBLE.pack(EXTENSION_PROFILE, len(extension) // 4)
        plain += extension
    plain += payload
    if padding:
        plain += bytes(padding - 1) + bytes((padding,))
    trailer = struct.pack(">I", nonce & 0xFFFFFFFF)
    sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plain), bytes(header), _nonce(trailer), bytes(key))
    return bytes(header) + sealed + trailer


def decrypt_packet(packet: bytes, key: bytes) -> tuple[RtpHeader, bytes]:
    """Open a packet: returns its header and the media frame (Opus or DAVE), extension body and padding removed.

    Raises `RtpError` on any malformed packet or authentication failure.
    """
    header = parse_header(packet)
    return header, decrypt_payload(packet, header, key)


def decrypt_payload(packet: bytes, header: RtpHeader, key: bytes) -> bytes:
    """`decrypt_packet` for an already parsed header (the receive path parses first to filter cheaply)."""
    hl = header.header_len
    if len(packet) < hl + TAG_LEN + NONCE_TRAILER_LEN:
        raise RtpError(f"packet too short for tag and nonce ({len(packet)} bytes)")
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            packet[hl:-NONCE_TRAILER_LEN], packet[:hl], _nonce(packet[-NONCE_TRAILER_LEN:]), key
        )
    except CryptoError as exc:
        raise RtpError("transport decryption failed (bad tag or key)") from exc
    except (TypeError, ValueError) as exc:  # wrong key length and the like
        raise RtpError(f"transport decryption failed: {exc}") from exc
    start = header.extension_words * 4 if header.extension else 0
    end = len(plain)
    if header.padding:
        if end == 0:
            raise RtpError("P bit set on an empty payload")
        pad = plain[-1]
        if pad == 0 or pad > end - start:
            raise RtpError(f"bad RTP padding count {pad}")
        end -= pad
    if start > end:
        raise RtpError(f"extension body ({start} bytes) longer than the decrypted data ({end} bytes)")
    return plain[start:end] if (start or end != len(plain)) else plain
