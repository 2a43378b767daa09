"""What chorus' Wyoming clients share: the server URI, timeouts, clear errors, the model I/O loop.

Wyoming (https://github.com/OHF-Voice/wyoming) is the speech-server protocol of the Home Assistant local-voice
ecosystem: JSON event headers plus binary audio payloads over TCP, one request per connection. The real servers
are `wyoming-faster-whisper` (STT) and `wyoming-piper` (TTS). The protocol has NO authentication and no
encryption: run the servers on the bot's host or a private network only (README, "Speech servers").

Callers are model threads (the STT worker, TTS workers): `run_blocking` / `submit` (`runtime.io_loop`) run the
requests on the shared model I/O loop, never on the bot's event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from wyoming.client import AsyncClient, AsyncTcpClient
from wyoming.event import Event

from runtime.io_loop import run_blocking, submit

__all__ = ["WyomingError", "check_uri", "close", "connect", "read_event", "run_blocking", "submit"]

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # one event from the server (a transcript, an audio chunk)


class WyomingError(RuntimeError):
    """A speech server could not be used (unreachable, closed the connection, answered something else)."""


def check_uri(uri: str, setting: str) -> tuple[str, int]:
    """(host, port) of a `tcp://host:port` URI, or a ValueError naming the setting."""
    parts = urlsplit(uri)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        raise ValueError(f"{setting}={uri!r}: expected tcp://host:port")
    return parts.hostname, parts.port


async def connect(uri: str, what: str) -> AsyncClient:
    """A connected client, or WyomingError with the server's address in one line."""
    host, port = check_uri(uri, what)
    client = AsyncTcpClient(host, port)
    try:
        await asyncio.wait_for(client.connect(), CONNECT_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError) as exc:
        raise WyomingError(f"cannot reach the Wyoming {what} server at {uri}: {exc or type(exc).__name__}") from None
    return client


async def read_event(client: AsyncClient, uri: str, what: str) -> Event:
    """The server's next event; a closed connection or a silent server is a WyomingError."""
    try:
        event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise WyomingError(f"the Wyoming {what} server at {uri} sent nothing for {READ_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise WyomingError(f"the Wyoming {what} server at {uri} broke the connection: {exc}") from None
    if event is None:
        raise WyomingError(f"the Wyoming {what} server at {uri} closed the connection")
    if event.type == "error":
        data: dict[str, Any] = event.data or {}
        raise WyomingError(f"the Wyoming {what} server at {uri} answered an error: {data.get('text', data)}")
    return event


async def close(client: AsyncClient) -> None:
    try:
        await client.disconnect()
    except OSError:
        pass
