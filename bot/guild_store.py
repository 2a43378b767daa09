"""Per-guild state (chosen persona, captions channel), kept in one JSON file under the data dir.

Writes are atomic (write a temp file, fsync, `os.replace`), so a crash never leaves half a
file. A file that cannot be read is moved aside (`guilds.json.corrupt-<time>`) and the store
starts empty; entries with bad values are skipped and the original file is copied aside first,
so nothing is lost. Methods are blocking file I/O: call the setters on the "io" executor (`bot.executors`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STORE_FILENAME = "guilds.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GuildState:
    persona: str | None = None  # persona name chosen with /persona set; None = the default persona
    captions_channel_id: int | None = None  # text channel where the bot posts what it heard and said


def _parse_state(raw: Any) -> GuildState:
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    unknown = set(raw) - {"persona", "captions_channel_id"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    persona = raw.get("persona")
    if persona is not None and (not isinstance(persona, str) or not persona.strip()):
        raise ValueError(f"persona: expected a name or null, got {persona!r}")
    channel = raw.get("captions_channel_id")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int) or channel <= 0):
        raise ValueError(f"captions_channel_id: expected a channel id or null, got {channel!r}")
    return GuildState(persona=persona, captions_channel_id=channel)


class GuildStore:
    """Thread-safe, in-memory view of per-guild state, saved on every change."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._states: dict[int, GuildState] = {}
        self._load()

    @classmethod
    def from_settings(cls, settings: Any) -> "GuildStore":
        return cls(Path(settings.data_dir) / STORE_FILENAME)

    # -- reading ----------------------------------------------------------------------
    def get(self, guild_id: int) -> GuildState:
        with self._lock:
            return self._states.get(guild_id, GuildState())

    def all(self) -> dict[int, GuildState]:
        with self._lock:
            return dict(self._states)

    # -- writing (blocking) -----------------------------------------------------------
    def update(self, guild_id: int, **changes: Any) -> GuildState:
        """Change fields of one guild's state and save. Returns the new state."""
        with self._lock:
            new = replace(self._states.get(guild_id, GuildState()), **changes)
            _parse_state(asdict(new))  # same validation as on load: never write what we cannot read
            states = dict(self._states)
            if new == GuildState():
                states.pop(guild_id, None)
            else:
                states[guild_id] = new
            self._save(states)  # memory changes only once the file has
            self._states = states
            return new

    def set_persona(self, guild_id: int, name: str | None) -> GuildState:
        return self.update(guild_id, persona=name)

    def set_captions_channel(self, guild_id: int, channel_id: int | None) -> GuildState:
        return self.update(guild_id, captions_channel_id=channel_id)

    def forget(self, guild_id: int) -> None:
        with self._lock:
            if guild_id in self._states:
                states = {k: v for k, v in self._states.items() if k != guild_id}
                self._save(states)
                self._states = states

    # -- file ---------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("guild store %s cannot be read (%s); starting empty", self.path, exc)
            return
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc.get("guilds"), dict):
                raise ValueError("expected {\"version\": 1, \"guilds\": {...}}")
        except (ValueError, UnicodeDecodeError) as exc:
            moved = self._set_aside(move=True)
            log.error("guild store %s is corrupt (%s); moved to %s, starting empty", self.path, exc, moved)
            return
        bad = 0
        for key, raw in doc["guilds"].items():
            try:
                guild_id = int(key)
                self._states[guild_id] = _parse_state(raw)
            except (ValueError, TypeError) as exc:
                bad += 1
                log.error("guild store %s: entry %r skipped: %s", self.path, key, exc)
        if bad:
            copy = self._set_aside(move=False)
            log.error("guild store %s: %d bad entr%s skipped; original kept at %s", self.path, bad, "y" if bad == 1 else "ies", copy)

    def _set_aside(self, *, move: bool) -> Path | None:
        target = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            if move:
                os.replace(self.path, target)
            else:
                shutil.copy2(self.path, target)
        except OSError as exc:
            log.error("could not set aside %s: %s", self.path, exc)
            return None
        return target

    def _save(self, states: dict[int, GuildState]) -> None:
        doc = {
            "version": FORMAT_VERSION,
            "guilds": {str(gid): asdict(state) for gid, state in sorted(states.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
