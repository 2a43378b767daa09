"""audio.rtp: header parsing and aead_xchacha20_poly1305_rtpsize round trips with real NaCl."""

from __future__ import annotations

import os
import struct
import types

import discord
import pytest

from audio import rtp

KEY = bytes(range(32))


def test_round_trip_plain():
    pkt = rtp.encrypt_packet(key=KEY, sequence=7, timestamp=960, ssrc=1234, payload=b"opus-frame", nonce=5)
    header, payload = rtp.decrypt_packet(pkt, KEY)
    assert payload == b"opus-frame"
    assert (header.version, header.payload_type, header.sequence, header.timestamp, header.ssrc) == (
        2,
        rtp.OPUS_PT,
        7,
        960,
        1234,
    )
    assert header.header_len == 12 and not header.padding and not header.extension and not header.marker
    assert len(pkt) == 12 + len(b"opus-frame") + 16 + 4
    assert pkt[-4:] == struct.pack(">I", 5)


@pytest.mark.parametrize("pad", [1, 2, 3, 15, 255])
def test_round_trip_padding_is_stripped(pad):
    pkt = rtp.encrypt_packet(key=KEY, sequence=1, timestamp=2, ssrc=3, payload=b"\x01\x02\x03", nonce=9, padding=pad)
    header, payload = rtp.decrypt_packet(pkt, KEY)
    assert header.padding
    assert payload == b"\x01\x02\x03"


def test_round_trip_extension_body_is_stripped_and_preamble_authenticated():
    body = b"\x10\x20\x30\x40" * 3
    pkt = rtp.encrypt_packet(key=KEY, sequence=1, timestamp=2, ssrc=3, payload=b"voice", nonce=1, extension=body)
    header, payload = rtp.decrypt_packet(pkt, KEY)
    assert header.extension and header.extension_words == 3 and header.extension_profile == 0xBEDE
    assert header.header_len == 16
    assert payload == b"voice"
    # the body is encrypted: it does not appear in the clear
    assert body not in pkt
    # the preamble is additional data: changing it breaks authentication
    tampered = bytearray(pkt)
    tampered[15] ^= 0x01
    with pytest.raises(rtp.RtpError):
        rtp.decrypt_packet(bytes(tampered), KEY)


def test_round_trip_csrcs_extension_padding_marker_together():
    pkt = rtp.encrypt_packet(
        key=KEY,
        sequence=65535,
        timestamp=2**32 - 1,
        ssrc=2**32 - 1,
        payload=b"x" * 100,
        nonce=2**32 - 1,
        extension=b"\xaa" * 8,
        padding=4,
        marker=True,
        csrcs=(1, 2, 3),
    )
    header, payload = rtp.decrypt_packet(pkt, KEY)
    assert header.csrc_count == 3 and header.header_len == 12 + 12 + 4
    assert header.marker and header.padding and header.extension
    assert payload == b"x" * 100


def test_bad_tag_wrong_key_and_truncation_raise_rtp_error():
    pkt = rtp.encrypt_packet(key=KEY, sequence=1, timestamp=2, ssrc=3, payload=b"abc", nonce=1)
    for i in (12, len(pkt) - 5, len(pkt) - 1):  # ciphertext, tag, nonce trailer
        bad = bytearray(pkt)
        bad[i] ^= 0x80
        with pytest.raises(rtp.RtpError):
            rtp.decrypt_packet(bytes(bad), KEY)
    with pytest.raises(rtp.RtpError):
        rtp.decrypt_packet(pkt, bytes(32))
    with pytest.raises(rtp.RtpError):
        rtp.decrypt_packet(pkt, b"short")
    for n in (0, 1, 11, 12, 20, 31):
        with pytest.raises(rtp.RtpError):
            rtp.decrypt_packet(pkt[:n], KEY)


def test_parse_header_rejects_bad_version_and_short_csrcs():
    with pytest.raises(rtp.RtpError):
        rtp.parse_header(b"\x40\x78" + bytes(10))  # version 1
    with pytest.raises(rtp.RtpError):
        rtp.parse_header(b"\x8f\x78" + bytes(10 + 4 * 14))  # 15 CSRCs but only 14 present
    with pytest.raises(rtp.RtpError):
        rtp.parse_header(b"\x90\x78" + bytes(10))  # X bit but no preamble
    h = rtp.parse_header(b"\x8f\x78" + bytes(10 + 4 * 15))
    assert h.csrc_count == 15 and h.header_len == 72


def test_bad_padding_count_raises():
    # P bit set but the count is larger than the payload (built by hand, encrypted correctly)
    header = bytes([0xA0, 0x78]) + struct.pack(">HII", 1, 2, 3)
    plain = b"ab\x09"
    trailer = struct.pack(">I", 4)
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

    pkt = header + crypto_aead_xchacha20poly1305_ietf_encrypt(plain, header, trailer + bytes(20), KEY) + trailer
    with pytest.raises(rtp.RtpError, match="padding"):
        rtp.decrypt_packet(pkt, KEY)
    plain0 = b"ab\x00"
    pkt0 = header + crypto_aead_xchacha20poly1305_ietf_encrypt(plain0, header, trailer + bytes(20), KEY) + trailer
    with pytest.raises(rtp.RtpError, match="padding"):
        rtp.decrypt_packet(pkt0, KEY)


def test_extension_longer_than_data_raises():
    header = bytes([0x90, 0x78]) + struct.pack(">HII", 1, 2, 3) + struct.pack(">HH", 0xBEDE, 50)
    trailer = struct.pack(">I", 4)
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

    pkt = header + crypto_aead_xchacha20poly1305_ietf_encrypt(b"tiny", header, trailer + bytes(20), KEY) + trailer
    with pytest.raises(rtp.RtpError, match="extension"):
        rtp.decrypt_packet(pkt, KEY)


def test_is_rtcp():
    for pt in range(200, 205):
        assert rtp.is_rtcp(bytes([0x80, pt]) + bytes(6))
    assert not rtp.is_rtcp(bytes([0x80, 0x78]) + bytes(10))
    assert not rtp.is_rtcp(bytes([0x80, 0xF8]) + bytes(10))  # marker + Opus


def test_opens_what_discord_py_voice_client_sends():
    """decrypt_packet opens packets built by discord.py's own VoiceClient encryption code."""

    class FakeClient(types.SimpleNamespace):
        def checked_add(self, attr, value, limit):
            discord.VoiceClient.checked_add(self, attr, value, limit)

    key = os.urandom(32)
    client = FakeClient(secret_key=list(key), _incr_nonce=41, sequence=100, timestamp=48000, ssrc=777)
    header = bytearray(12)
    header[0] = 0x80
    header[1] = 0x78
    struct.pack_into(">H", header, 2, client.sequence)
    struct.pack_into(">I", header, 4, client.timestamp)
    struct.pack_into(">I", header, 8, client.ssrc)
    pkt = discord.VoiceClient._encrypt_aead_xchacha20_poly1305_rtpsize(client, bytes(header), b"\xf8\xff\xfe")
    h, payload = rtp.decrypt_packet(pkt, key)
    assert payload == b"\xf8\xff\xfe"
    assert (h.sequence, h.timestamp, h.ssrc) == (100, 48000, 777)
    assert client._incr_nonce == 42

    # and discord.py-style packets are byte-identical to what encrypt_packet builds with the same inputs
    ours = rtp.encrypt_packet(key=key, sequence=100, timestamp=48000, ssrc=777, payload=b"\xf8\xff\xfe", nonce=41)
    assert ours == pkt
