"""Structured logging: human-readable text or one JSON object per line (CHORUS_LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import sys

# Attributes every LogRecord has; anything else was passed with `extra=` and is structured context.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "t": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class NetworkTracebacksInDebugOnly(logging.Filter):
    """A network error that discord.py logs with a traceback while it reconnects (no route, DNS, timeouts, a
    closed socket) becomes one line unless the log level is DEBUG: it is expected, and the stack helps no one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or logging.getLogger().isEnabledFor(logging.DEBUG) or not _is_network_error(exc):
            return True
        from runtime.errors import describe_network_error

        record.msg, record.args = f"{record.getMessage()}: {describe_network_error(exc)}", None
        record.exc_info = record.exc_text = None
        if record.levelno > logging.WARNING:  # a retry is under way: a warning, not an error
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _is_network_error(exc: BaseException) -> bool:
    import asyncio

    import aiohttp
    import discord

    return isinstance(
        exc, (OSError, aiohttp.ClientError, asyncio.TimeoutError, discord.ConnectionClosed, discord.GatewayNotFound)
    )


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(NetworkTracebacksInDebugOnly())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # discord.py is chatty at INFO about gateway internals.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
