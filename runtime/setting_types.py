"""The pieces settings are declared with: `SettingSpec`, the value parsers, `SettingsError`.

A parser takes the raw text of an environment variable and returns the typed value or raises `ValueError`
with what was expected; `runtime.settings.load_settings` names the setting in the `SettingsError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.database_url import database_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value chorus cannot use."""


@dataclass(frozen=True)
class SettingSpec:
    env: str
    attr: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(
                f"expected an integer in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            )
        return value

    return parse


def _float_range(lo: float | None = None, hi: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(
                f"expected a number in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            )
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _optional_float_range(lo: float, hi: float) -> Callable[[str], float | None]:
    inner = _float_range(lo, hi)

    def parse(raw: str) -> float | None:
        return inner(raw) if raw.strip() else None

    return parse


def _optional_int_range(lo: int, hi: int) -> Callable[[str], int | None]:
    inner = _int_range(lo, hi)

    def parse(raw: str) -> int | None:
        return inner(raw) if raw.strip() else None

    return parse


def _str(raw: str) -> str:
    return raw.strip()


def _host(raw: str) -> str:
    """A host name or IP address to listen on."""
    value = raw.strip()
    if not value or not all(c.isalnum() or c in ".-:[]" for c in value):
        raise ValueError("expected a host name or IP address (127.0.0.1, 0.0.0.0, ::1)")
    return value


def _optional_int(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected an integer id or empty") from None


def _id_list(raw: str) -> tuple[int, ...]:
    out = []
    for part in raw.replace(",", " ").split():
        try:
            out.append(int(part))
        except ValueError:
            raise ValueError(f"expected comma-separated integer ids, got {part!r}") from None
    return tuple(out)


def _database_url(raw: str) -> str:
    """Empty, or a PostgreSQL / SQLite URL (checked here, so a typo fails at start with the setting's name)."""
    raw = raw.strip()
    if raw:
        database_url(raw, PROJECT_ROOT)  # raises ValueError with the expected form
    return raw


def _tcp_uri(raw: str) -> str:
    """A Wyoming server address, tcp://host:port."""
    from urllib.parse import urlsplit

    raw = raw.strip()
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or not port:
        raise ValueError("expected tcp://host:port")
    return raw


def _path(raw: str) -> Path:
    """A path; relative ones are taken from the project root, so `.env` works from any cwd."""
    path = Path(raw.strip()).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path
