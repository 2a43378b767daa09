"""Database failures as one clear line: which kind of fault, what it means for the bot.

`classify(exc)` looks through SQLAlchemy's wrapper to the driver's error (sqlite3, asyncpg, a
socket error) and names the fault: `locked` (SQLite busy past its timeout), `disk_full`,
`unreachable` (PostgreSQL down, restarting, refusing connections; a file that cannot be opened),
or `error` (anything else, e.g. a constraint the code got wrong).
"""

from __future__ import annotations

import asyncio

LOCKED = "locked"
DISK_FULL = "disk_full"
UNREACHABLE = "unreachable"
ERROR = "error"

# Faults that pass: a write may be tried again later. `error` is a bug or bad data: retrying cannot help.
TRANSIENT = frozenset({LOCKED, DISK_FULL, UNREACHABLE})

_HINTS = {
    LOCKED: "the SQLite file is locked by another process or a long write",
    DISK_FULL: "the disk holding the database is full",
    UNREACHABLE: "the database server cannot be reached (down, restarting or refusing connections)",
    ERROR: "the database refused the operation",
}

_UNREACHABLE_NAMES = {
    "CannotConnectNowError",
    "ConnectionDoesNotExistError",
    "AdminShutdownError",
    "ConnectionFailureError",
    "InterfaceError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "TooManyConnectionsError",
    "CrashShutdownError",
    "TimeoutError",
    "InternalClientError",
}


class StorageError(RuntimeError):
    """A database operation failed; `kind` says which fault (see module doc), `str()` is one clear line."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{_HINTS.get(kind, _HINTS[ERROR])} ({detail})")
        self.kind = kind
        self.detail = detail

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> str:
    """The fault kind of a database exception (see the module doc)."""
    for item in _chain(exc):
        text = str(item).lower()
        name = type(item).__name__
        if "database is locked" in text or "database table is locked" in text or "database is busy" in text:
            return LOCKED
        if "disk is full" in text or "no space left" in text or "disk full" in text or "diskfull" in name.lower():
            return DISK_FULL
        if isinstance(item, (ConnectionError, asyncio.TimeoutError, TimeoutError)) or name in _UNREACHABLE_NAMES:
            return UNREACHABLE
        if isinstance(item, OSError) and not isinstance(item, FileNotFoundError):
            return UNREACHABLE
        if (
            "unable to open database" in text
            or "connection refused" in text
            or "could not connect" in text
            or "the database system is" in text
            or "terminating connection" in text
            or "connection was closed" in text
            or "server closed the connection" in text
        ):
            return UNREACHABLE
    return ERROR


def detail_of(exc: BaseException) -> str:
    """The innermost driver message, one line, short."""
    chain = _chain(exc)
    inner = chain[-1] if chain else exc
    text = " ".join(str(inner).split()) or type(inner).__name__
    return f"{type(inner).__name__}: {text[:200]}"


def as_storage_error(exc: BaseException) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    return StorageError(classify(exc), detail_of(exc))
