"""The one-time import of the old per-guild JSON file (`guilds.json`) into the database.

Before the database, per-guild state lived in `CHORUS_DATA_DIR/guilds.json`. On the first start with
the database, its entries are copied into `guild_settings` (a row already in the database wins), and
the file is renamed `guilds.json.migrated-<time>`: kept aside, never read again, nothing lost. A file
that is not valid JSON is renamed `guilds.json.corrupt-<time>` and nothing is imported from it; entries
with bad values are skipped and named in the log (the renamed file still holds them).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from storage.db import Database, upsert
from storage.guild_state import GuildState, validate_state
from storage.schema import guild_settings, storage_meta

log = logging.getLogger(__name__)

LEGACY_FILENAME = "guilds.json"


def parse_legacy(doc: Any, source: Path) -> dict[int, dict[str, Any]]:
    """{guild id: {persona, captions_channel_id}} from the old file's document; bad entries are skipped (logged)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("guilds"), dict):
        raise ValueError('expected {"version": 1, "guilds": {...}}')
    out: dict[int, dict[str, Any]] = {}
    for key, raw in doc["guilds"].items():
        try:
            if not isinstance(raw, dict) or set(raw) - {"persona", "captions_channel_id"}:
                raise ValueError(f"unexpected entry {raw!r}")
            state = GuildState(persona=raw.get("persona"), captions_channel_id=raw.get("captions_channel_id"))
            validate_state(state)
            out[int(key)] = {"persona": state.persona, "captions_channel_id": state.captions_channel_id}
        except (ValueError, TypeError) as exc:
            log.error("%s: entry %r skipped: %s", source, key, exc)
    return out


async def import_legacy_guilds(db: Database, data_dir: Path) -> int | None:
    """Import `data_dir/guilds.json` once, then set it aside. Returns the guilds imported (None: no file)."""
    path = Path(data_dir) / LEGACY_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("old guild file %s cannot be read (%s); it is left in place and tried again next start", path, exc)
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    try:
        entries = parse_legacy(json.loads(text), path)
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        os.replace(path, aside)
        log.error("old guild file %s is corrupt (%s); moved to %s, nothing imported", path, exc, aside)
        return 0
    now = time.time()
    async with db.transaction() as conn:
        for guild_id, values in entries.items():
            row = {"guild_id": guild_id, "memory_enabled": True, "updated_at": now, **values}
            await conn.execute(upsert(db.dialect, guild_settings, row, ["guild_id"], []))  # a database row wins
        await conn.execute(
            upsert(
                db.dialect, storage_meta, {"key": "legacy_guilds_json", "value": f"{path} {stamp}"}, ["key"], ["value"]
            )
        )
    aside = path.with_name(f"{path.name}.migrated-{stamp}")
    os.replace(path, aside)
    log.info("imported %d guild(s) from %s into the database; the file is kept as %s", len(entries), path, aside)
    return len(entries)


async def legacy_import_note(db: Database) -> str | None:
    async with db.transaction() as conn:
        return (
            await conn.execute(sa.select(storage_meta.c.value).where(storage_meta.c.key == "legacy_guilds_json"))
        ).scalar_one_or_none()
