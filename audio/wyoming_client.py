"""What chorus' Wyoming clients share: one background event loop, the server URI, timeouts, clear errors.

Wyoming (https://github.com/OHF-Voice/wyoming) is the speech-server protocol of the Home Assistant local-voice
ecosystem: JSON event headers plus binary audio payloads over TCP, one request per connection. The real servers
are `wyoming-faster-whisper` (STT) and `wyoming-piper` (TTS). The protocol has NO authentication and no
encryption: run the servers on the bot's host or a private network only (README, "Speech servers").

Callers are model threads (the STT worker, TTS workers): `run_blocking` runs a coroutine on the shared loop
and waits for it, so no thread ever blocks the bot's event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, TypeVar
from urllib.parse import urlsplit

from wyoming.client import AsyncClient, AsyncTcpClient
from wyoming.event import Event

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # one event from the server (a transcript, an audio chunk)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


class WyomingError(RuntimeError):
    """A speech server could not be used (unreachable, closed the connection, answered something else)."""


def check_uri(uri: str, setting: str) -> tuple[str, int]:
    """(host, port) of a `tcp://host:port` URI, or a ValueError naming the setting."""
    parts = urlsplit(uri)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        raise ValueError(f"{setting}={uri!r}: expected tcp://host:port")
    return parts.hostname, parts.port


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="wyoming-io", daemon=True).start()
            _loop = loop
        return _loop


def submit(coro: Awaitable[T]) -> concurrent.futures.Future[T]:
    """Start `coro` on the shared Wyoming loop; cancel the returned future to cancel it."""
    return asyncio.run_coroutine_threadsafe(coro, _background_loop())  # type: ignore[arg-type]


def run_blocking(coro: Awaitable[T]) -> T:
    """Run `coro` on the shared loop and wait for its result (from any thread but that loop's)."""
    return submit(coro).result()


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
