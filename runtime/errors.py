"""The error types of start-up faults, each one line that says what to do, and the lines that describe them.

Low in the house: settings, models and metrics raise them; `bot.startup` and `python -m bot` turn them into an
exit code.
"""

from __future__ import annotations

import asyncio
import errno

import aiohttp
import discord

EXIT_SETTINGS = 2  # a setting Discord or this machine refuses: fix it and start again
EXIT_MODELS = 3
EXIT_NETWORK = 4  # gave up waiting for Discord (only when attempts are bounded)


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message is one line that says what to do."""


class StartupError(RuntimeError):
    """A start-up fault; its message is one line saying what to do."""

    def __init__(self, message: str, exit_code: int = EXIT_SETTINGS) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe_network_error(exc: BaseException) -> str:
    """One line for an error on the way to Discord."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"the DNS lookup for {exc.host} failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = (exc.os_error.strerror or str(exc.os_error)) if exc.os_error else str(exc)
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "the connection timed out"
    if isinstance(exc, discord.HTTPException):
        return f"Discord answered HTTP {exc.status}" + (f" ({exc.text})" if exc.text else "")
    if isinstance(exc, discord.GatewayNotFound):
        return "Discord's gateway could not be found"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def port_in_use_error(setting: str, host: str, port: int, exc: OSError) -> StartupError | OSError:
    """A server socket that could not bind, as the line that says what to do (other OSErrors unchanged)."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"{setting}={port}: the port is already in use on {host}; stop the program using it or choose another port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StartupError(
            f"{setting}={port}: not allowed to listen on {host}:{port} (ports below 1024 need "
            f"root); choose a port above 1024"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupError(f"{setting}: {host} is not an address of this machine")
    return exc
