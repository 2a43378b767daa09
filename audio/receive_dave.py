"""The DAVE step of the receive path: end-to-end decrypt one member's frame with the bot's own session.

discord.py keeps the session on the voice connection (``dave_session``, ``dave_protocol_version``) and replaces
it on transitions and reconnects, so both are read again for every frame. Nothing undecryptable ever reaches the
Opus decoder (it would "decode" ciphertext into noise without complaint).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

try:
    import davey
except ImportError:  # pragma: no cover - discord.py[voice] 2.7.1 always brings davey
    davey = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"
DAVE_MAGIC = b"\xfa\xfa"  # every DAVE-encrypted frame ends with this marker


class DaveOutcome:
    """Why a frame did not come out of the DAVE step (a ReceiveStats drop reason), or a note to count."""

    PLAIN_BEFORE_GROUP = "dave_plain_before_group"  # passed through: no group yet, members still send plain Opus


def dave_decrypt(conn: Any, user_id: int, payload: bytes) -> tuple[bytes | None, str | None]:
    """(Opus frame, None) or (None, drop reason). A plain frame before the group exists passes with the note
    `DaveOutcome.PLAIN_BEFORE_GROUP` as its second element."""
    if payload == OPUS_SILENCE:
        return payload, None
    session = conn.dave_session
    if not conn.dave_protocol_version:
        if not payload.endswith(DAVE_MAGIC):
            return payload, None  # DAVE off: plain Opus
        if session is None:
            return None, "dave_unexpected"
        # a downgrade in flight: the member may still encrypt; let the session decide
    elif session is None:
        return None, "dave_no_session"
    try:
        return session.decrypt(user_id, davey.MediaType.audio, payload), None
    except Exception as exc:  # davey raises ValueError('Failed to decrypt: <reason>')
        msg = str(exc)
        log.debug("DAVE decrypt for user %s failed: %s", user_id, msg)
        if "NoDecryptorForUser" in msg:
            if not session.ready and not payload.endswith(DAVE_MAGIC):
                return payload, DaveOutcome.PLAIN_BEFORE_GROUP  # upgrade in flight: members send plain, as we do
            return None, "dave_no_decryptor"
        if "UnencryptedWhenPassthroughDisabled" in msg:
            return None, "dave_unencrypted"
        return None, "dave_error"


def group_user_ids(conn: Any) -> list[int] | None:
    """Members of the bot's established DAVE group, or None when there is none (DAVE off, no group yet)."""
    session = conn.dave_session
    if not conn.dave_protocol_version or session is None or not session.ready:
        return None
    try:
        return [int(u) for u in session.get_user_ids()]
    except Exception:
        return None


def identify_sender(conn: Any, payload: bytes, candidates: Iterable[int]) -> tuple[int, bytes] | None:
    """An SSRC nobody announced: under DAVE, the member whose key opens the frame is its sender (DAVE frames are
    authenticated per sender). Returns (member, Opus frame) or None."""
    session = conn.dave_session
    if session is None or not payload.endswith(DAVE_MAGIC):
        return None
    for user_id in candidates:
        try:
            return user_id, session.decrypt(user_id, davey.MediaType.audio, payload)
        except Exception:
            continue
    return None
