"""Per-guild state: persisted atomically, survives restarts, corrupt files are set aside, not lost."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from bot.guild_store import STORE_FILENAME, GuildState, GuildStore
from bot.settings import load_settings


def test_state_survives_a_restart(tmp_path: Path) -> None:
    settings = load_settings(env={"CHORUS_DATA_DIR": str(tmp_path / "data")}, env_file=None)
    store = GuildStore.from_settings(settings)
    assert store.get(1) == GuildState()
    store.set_persona(1, "Trixie")
    store.set_captions_channel(1, 555)
    store.set_persona(2, "Juniper")
    path = tmp_path / "data" / STORE_FILENAME
    assert path.is_file()

    reopened = GuildStore.from_settings(settings)
    assert reopened.get(1) == GuildState(persona="Trixie", captions_channel_id=555)
    assert reopened.get(2).persona == "Juniper"
    assert reopened.get(3) == GuildState()
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["guilds"]["1"] == {"persona": "Trixie", "captions_channel_id": 555}


def test_clearing_everything_removes_the_entry(tmp_path: Path) -> None:
    store = GuildStore(tmp_path / STORE_FILENAME)
    store.set_persona(7, "Juniper")
    store.set_persona(7, None)
    assert store.all() == {}
    store.set_persona(8, "Juniper")
    store.forget(8)
    assert GuildStore(tmp_path / STORE_FILENAME).all() == {}


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / STORE_FILENAME
    store = GuildStore(path)
    store.set_persona(1, "Juniper")
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.set_persona(1, "Trixie")
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is intact
    assert store.get(1).persona == "Juniper"  # memory did not drift from disk
    assert [p.name for p in tmp_path.iterdir()] == [STORE_FILENAME]


def test_invalid_values_are_refused_before_writing(tmp_path: Path) -> None:
    store = GuildStore(tmp_path / STORE_FILENAME)
    with pytest.raises(ValueError):
        store.set_captions_channel(1, -4)
    with pytest.raises(ValueError):
        store.set_persona(1, "   ")
    assert not (tmp_path / STORE_FILENAME).exists()


def test_corrupt_file_is_moved_aside_and_store_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / STORE_FILENAME
    path.write_text('{"version": 1, "guilds": {"1": {"persona": "Jun', encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="bot.guild_store"):
        store = GuildStore(path)
    assert store.all() == {}
    assert "corrupt" in caplog.text
    aside = list(tmp_path.glob(f"{STORE_FILENAME}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"version": 1')
    assert not path.exists()
    store.set_persona(1, "Juniper")  # and it keeps working
    assert GuildStore(path).get(1).persona == "Juniper"


def test_wrong_shape_counts_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILENAME
    path.write_text("[1, 2, 3]", encoding="utf-8")
    assert GuildStore(path).all() == {}
    assert len(list(tmp_path.glob("*.corrupt-*"))) == 1


def test_bad_entries_are_skipped_and_original_copied_aside(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILENAME
    original = {
        "version": 1,
        "guilds": {
            "1": {"persona": "Trixie", "captions_channel_id": None},
            "x": {"persona": "Juniper"},
            "3": {"persona": 42},
            "4": {"persona": "Captain Hollis", "color": "blue"},
        },
    }
    path.write_text(json.dumps(original), encoding="utf-8")
    store = GuildStore(path)
    assert store.all() == {1: GuildState(persona="Trixie")}
    aside = list(tmp_path.glob(f"{STORE_FILENAME}.corrupt-*"))
    assert len(aside) == 1 and json.loads(aside[0].read_text()) == original
