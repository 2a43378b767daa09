"""Packet accounting for the receive path.

Every packet handed to the receiver lands in exactly one final bucket (``decoded`` or one ``dropped_<reason>``)
or is still ``pending`` (queued, held for an unknown SSRC, or waiting in a reorder buffer), so at any moment::

    received == decoded + sum(dropped_*) + pending

Frame counters (``frames_out``, ``plc_frames``, ``fec_frames``, ``frames_withheld``: decoded frames not handed
over because their member opted out or left meanwhile) count output, not packets, and are outside that sum.
"""

from __future__ import annotations

import logging
import threading
import time

DROP_REASONS = (
    "malformed",  # not RTP v2 / truncated header (includes IP discovery replies)
    "keepalive",  # the voice server's echo of our UDP keepalive (8 bytes; `audio.voice_connection`)
    "rtcp",
    "not_opus",  # payload type other than 0x78: video, RTX, probes
    "video",  # SSRC announced as a video/RTX stream
    "own",  # our own SSRC or user
    "no_key",  # no secret key yet, or an unsupported transport mode
    "decrypt",  # transport AEAD failure (bad tag, wrong key, short packet, bad padding/extension)
    "empty",  # nothing left after decryption
    "unmapped",  # SSRC never mapped to a member in time (or too many unmapped SSRCs)
    "opted_out",  # the member opted out of being heard: dropped before DAVE decryption and Opus decoding
    "dave_no_decryptor",
    "dave_unencrypted",  # plain frame while passthrough is off
    "dave_unexpected",  # a DAVE-encrypted frame while DAVE is off (never fed to Opus)
    "dave_no_session",
    "dave_error",
    "late",  # behind the stream's playout point
    "duplicate",
    "opus",  # libopus refused the frame
    "overload",  # worker queue full
    "member_left",  # buffered when the member left / stream evicted
    "stopped",  # buffered when the receiver stopped
    "internal",  # a bug: an unexpected exception (logged with a traceback)
)


class ReceiveStats:
    """Thread-safe counters; `as_dict()` is a consistent snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: dict[str, int] = {"received": 0, "decoded": 0, "pending": 0}
        for r in DROP_REASONS:
            self._c["dropped_" + r] = 0
        self._c.update(frames_out=0, plc_frames=0, fec_frames=0)
        self._last_logged: dict[str, int] | None = None
        self._last_log_t = time.monotonic()

    def received(self) -> None:
        with self._lock:
            self._c["received"] += 1

    def drop(self, reason: str, *, was_pending: bool = False) -> None:
        key = "dropped_" + reason
        with self._lock:
            if key not in self._c:
                key = "dropped_internal"
            self._c[key] += 1
            if was_pending:
                self._c["pending"] -= 1

    def drop_many(self, reason: str, n: int, *, was_pending: bool = True) -> None:
        if n <= 0:
            return
        with self._lock:
            self._c["dropped_" + reason] += n
            if was_pending:
                self._c["pending"] -= n

    def pend(self) -> None:
        with self._lock:
            self._c["pending"] += 1

    def decoded(self, *, was_pending: bool = True) -> None:
        with self._lock:
            self._c["decoded"] += 1
            if was_pending:
                self._c["pending"] -= 1

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] = self._c.get(key, 0) + n

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self._c[key]

    @staticmethod
    def balance(d: dict[str, int]) -> int:
        """received - (decoded + dropped + pending): 0 when every packet is accounted for."""
        dropped = sum(v for k, v in d.items() if k.startswith("dropped_"))
        return d["received"] - d["decoded"] - dropped - d["pending"]

    def maybe_log(self, logger: logging.Logger, interval: float, *, now: float | None = None) -> bool:
        """Log the non-zero counters every ``interval`` seconds, only when they changed. Returns True if logged."""
        now = time.monotonic() if now is None else now
        if now - self._last_log_t < interval:
            return False
        self._last_log_t = now
        snap = self.as_dict()
        if snap == self._last_logged:
            return False
        self._last_logged = snap
        logger.info("voice receive: %s", " ".join(f"{k}={v}" for k, v in snap.items() if v))
        return True
