"""What `DATABASE_URL` means: the SQLAlchemy async URL of the database (empty: the SQLite file under the data
folder). Here, below storage, so that the settings check the URL's form at start with the setting's name."""

from __future__ import annotations

from pathlib import Path

SQLITE_FILENAME = "chorus.db"


def database_url(raw: str, data_dir: Path) -> str:
    """The SQLAlchemy async URL for `DATABASE_URL` (empty: the SQLite file under `data_dir`)."""
    raw = raw.strip()
    if not raw:
        return f"sqlite+aiosqlite:///{Path(data_dir) / SQLITE_FILENAME}"
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if raw.startswith(plain):
            return driver + raw[len(plain) :]
    if raw.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return raw
    raise ValueError("expected postgresql://user:password@host:port/dbname or sqlite:///path/to/file.db")
