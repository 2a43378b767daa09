"""The voice gateway's vocabulary (opcodes, close codes) and what the loopback server knows of the bot's session."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_GUILD_ID = 700_000_000_000_000_001
DEFAULT_CHANNEL_ID = 700_000_000_000_000_002

# Voice gateway opcodes
IDENTIFY, SELECT_PROTOCOL, READY, HEARTBEAT, SESSION_DESCRIPTION, SPEAKING = 0, 1, 2, 3, 4, 5
HEARTBEAT_ACK, RESUME, HELLO, RESUMED, CLIENTS_CONNECT, CLIENT_DISCONNECT = 6, 7, 8, 9, 11, 13
DAVE_PREPARE_TRANSITION, DAVE_EXECUTE_TRANSITION, DAVE_TRANSITION_READY, DAVE_PREPARE_EPOCH = 21, 22, 23, 24
MLS_EXTERNAL_SENDER, MLS_KEY_PACKAGE, MLS_PROPOSALS, MLS_COMMIT_WELCOME = 25, 26, 27, 28
MLS_ANNOUNCE_COMMIT_TRANSITION, MLS_WELCOME, MLS_INVALID_COMMIT_WELCOME = 29, 30, 31

CLOSE_DECODE_ERROR = 4002
CLOSE_SESSION_INVALID = 4006
CLOSE_ABNORMAL = 1006  # never sent in a close frame: the connection just drops (what `disconnect_client(1006)` does)
SESSION_ENDING_CODES = frozenset({4006, 4009, 4014})  # a resume after these is refused (4006)
KEEPALIVE_SIZE = 8  # a client's UDP keepalive datagram; Discord echoes it back
CLOSE_AUTH_FAILED = 4004
CLOSE_DAVE_REQUIRED = 4017


@dataclass
class BotSession:
    """One voice session of the bot (survives a resume, not a new identify)."""

    user_id: int
    session_id: str
    ssrc: int
    secret_key: bytes = field(default_factory=lambda: os.urandom(32))
    max_dave_version: int = 0
    dave_version: int = 0
    mode: str | None = None
    udp_addr: tuple[str, int] | None = None
    ws: web.WebSocketResponse | None = None
    transport: Any = None  # the websocket's TCP transport (aborted to drop the connection without a close frame)
    resumable: bool = True  # False once closed with a code that ends the session (4006, 4009, 4014)
    seq: int = 0
    nonce: int = 0
    key_packages: int = 0  # op 26 received
    key_package: bytes = b""  # the latest one
    welcomes: int = 0  # op 30 sent
    commits: int = 0  # op 28 received
    invalid_commits: list[int] = field(default_factory=list)  # transition ids from op 31
    transitions_executed: list[int] = field(default_factory=list)
    packets_from_bot: int = 0
    packets_while_down: int = 0  # media from the bot while its websocket was gone (not relayed)
    bad_packets_from_bot: int = 0
    speaking_announced: set[int] = field(default_factory=set)  # member ssrcs sent in op 5 on this connection
    recent_frames: deque[bytes] = field(default_factory=lambda: deque(maxlen=100))  # the bot's, transport-decrypted

    @property
    def media_live(self) -> bool:
        """Media is relayed while the session's websocket is up: a voice server whose signalling connection to
        a client dropped (or that crashed, 4015) relays nothing for it until it resumes or starts anew."""
        return self.ws is not None and not self.ws.closed
