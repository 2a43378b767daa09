"""Hostile voice packets: what a receive path must survive on Discord's UDP port (fuzzing and benchmarks).

`HostilePackets` yields ``(kind, datagram)`` of many kinds, seeded: random bytes, truncated and bit-flipped real
packets, RTP headers that lie (CSRC counts, extension lengths, versions), video and RTCP packet types, replays of
packets already sent, and packets the transport authenticates but whose content is junk (a member of the call
can send those: junk frames, bad RTP padding, huge header extensions, empty payloads).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from simulator.receive_rig import Member

KINDS = (
    "random",
    "truncated",
    "bad_tag",
    "bitflip",
    "huge_cc",
    "ext_lies",
    "video_pt",
    "rtcp",
    "replay",
    "auth_garbage",
    "auth_bad_padding",
    "auth_huge_ext",
    "tiny",
    "wrong_version",
    "empty_payload",
)


class HostilePackets:
    """An endless, seeded stream of hostile datagrams (see the module docstring).

    ``valid``: real packets to truncate and flip bits in; ``already_sent``: a list the caller appends the valid
    packets it sends to (replays are of packets already sent: nobody replays the future); ``vandal``: a member
    of the call whose transport key is the real one (for the authenticated kinds).
    """

    def __init__(
        self,
        rng: random.Random,
        key: bytes,
        mapped_ssrcs: list[int],
        valid: list[bytes],
        vandal: Member,
        already_sent: list[bytes],
    ) -> None:
        self.rng = rng
        self.key = key
        self.mapped_ssrcs = mapped_ssrcs
        self.valid = valid
        self.vandal = vandal
        self.already_sent = already_sent

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return self

    def __next__(self) -> tuple[str, bytes]:
        kind = self.rng.choice(KINDS)
        return kind, getattr(self, "_" + kind)()

    def _sealed(self, header: bytes, body: bytes) -> bytes:
        trailer = self.rng.randbytes(4)
        return (
            header + crypto_aead_xchacha20poly1305_ietf_encrypt(body, header, trailer + bytes(20), self.key) + trailer
        )

    def _random(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(0, 1500))

    def _truncated(self) -> bytes:
        p = self.rng.choice(self.valid)
        return p[: self.rng.randrange(0, len(p))]

    def _bad_tag(self) -> bytes:
        rng = self.rng
        ssrc = rng.choice(self.mapped_ssrcs + [rng.randrange(2**32)])
        return (
            bytes([0x80, 0x78])
            + struct.pack(">HII", rng.randrange(65536), rng.randrange(2**32), ssrc)
            + rng.randbytes(rng.randrange(0, 200))
        )

    def _bitflip(self) -> bytes:
        p = bytearray(self.rng.choice(self.valid))
        i = self.rng.randrange(12, len(p))  # keep the header parseable so it reaches decryption
        p[i] ^= 1 << self.rng.randrange(8)
        return bytes(p)

    def _huge_cc(self) -> bytes:
        return bytes([0x8F, 0x78]) + self.rng.randbytes(self.rng.randrange(10, 90))

    def _ext_lies(self) -> bytes:
        rng = self.rng
        return (
            bytes([0x90 | rng.randrange(16), 0x78])
            + rng.randbytes(10 + 4 * 15)
            + struct.pack(">HH", 0xBEDE, rng.randrange(65536))
            + rng.randbytes(rng.randrange(0, 64))
        )

    def _video_pt(self) -> bytes:
        rng = self.rng
        return bytes([0x80, rng.choice([96, 97, 101, 102, 103, 104, 105])]) + rng.randbytes(rng.randrange(10, 400))

    def _rtcp(self) -> bytes:
        rng = self.rng
        return bytes([0x80 | rng.randrange(32), rng.randrange(200, 205)]) + rng.randbytes(rng.randrange(6, 100))

    def _replay(self) -> bytes:
        return self.rng.choice(self.already_sent) if self.already_sent else b""

    def _auth_garbage(self) -> bytes:
        # authenticated by the transport, but the frame is junk: DAVE must reject it, Opus never sees it
        return self.vandal.packet(self.rng.randbytes(self.rng.randrange(1, 300)), encrypt_dave=False)

    def _auth_bad_padding(self) -> bytes:
        header = bytes([0xA0, 0x78]) + struct.pack(">HII", 1, 2, self.vandal.ssrc)
        body = self.rng.randbytes(self.rng.randrange(0, 20)) + bytes([self.rng.choice([0, 200, 255])])
        return self._sealed(header, body)

    def _auth_huge_ext(self) -> bytes:
        header = bytes([0x90, 0x78]) + struct.pack(">HII", 1, 2, self.vandal.ssrc) + struct.pack(">HH", 0xBEDE, 5000)
        return self._sealed(header, b"x" * 40)

    def _tiny(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(0, 12))

    def _wrong_version(self) -> bytes:
        p = bytearray(self.rng.choice(self.valid))
        p[0] = (p[0] & 0x3F) | (self.rng.choice([0, 1, 3]) << 6)
        return bytes(p)

    def _empty_payload(self) -> bytes:
        return self.vandal.packet(b"", encrypt_dave=False)
