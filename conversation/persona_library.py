"""Loading persona files, one at a time or a whole folder, into a `PersonaLibrary` looked up by name.

A persona is one file in the personas folder (see `personas/README.md`): `*.toml` (chorus' own format),
`*.json` (a SillyTavern Character Card) or `*.png` (the card embedded in a text chunk). `PersonaLibrary.load`
keeps the good files and records the broken ones in `.errors`; one bad file never stops the others.
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from conversation.persona import Persona, PersonaError
from conversation.persona_card import persona_from_card
from conversation.persona_png import MAX_PNG_BYTES, card_from_png
from conversation.persona_toml import persona_from_toml_data

log = logging.getLogger(__name__)

PERSONA_SUFFIXES = (".toml", ".json", ".png")
AUTOCOMPLETE_LIMIT = 25


def load_persona(path: Path | str) -> Persona:
    """Load one persona file (.toml, .json or .png). Raises PersonaError naming the file and field."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PERSONA_SUFFIXES:
        raise PersonaError(path, None, f"unsupported file type {suffix!r} (expected {', '.join(PERSONA_SUFFIXES)})")
    try:
        if suffix == ".png":
            size = path.stat().st_size
            if size > MAX_PNG_BYTES:
                raise PersonaError(path, None, f"PNG too large ({size} bytes)")
            blob = path.read_bytes()
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersonaError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PersonaError(path, None, f"not UTF-8 text: {exc}") from None

    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PersonaError(path, None, f"TOML syntax error: {exc}") from None
        return persona_from_toml_data(data, path)
    if suffix == ".json":
        try:
            card = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PersonaError(path, None, f"JSON syntax error: {exc}") from None
        return persona_from_card(card, path)
    return persona_from_card(card_from_png(blob, path), path)


class PersonaLibrary:
    """The personas of one folder, by name (case-insensitive). Broken files are kept in `.errors`."""

    def __init__(
        self, personas: Iterable[Persona] = (), errors: Iterable[tuple[Path, str]] = (), folder: Path | None = None
    ) -> None:
        self.folder = folder
        self.errors: list[tuple[Path, str]] = list(errors)
        self._by_key: dict[str, Persona] = {}
        for persona in personas:
            self._add(persona)

    def _add(self, persona: Persona) -> None:
        key = persona.name.casefold()
        first = self._by_key.get(key)
        if first is not None:
            where = persona.source or Path("<memory>")
            message = f"field 'name': duplicate persona name {persona.name!r} (already defined by {first.source}); this file is ignored"
            log.warning("persona %s: %s", where, message)
            self.errors.append((where, message))
            return
        self._by_key[key] = persona

    @classmethod
    def load(cls, folder: Path | str) -> "PersonaLibrary":
        """Load every persona file of `folder` (sorted by file name, so the first duplicate wins).

        Blocking file I/O: call from a thread (`asyncio.to_thread`) once the event loop runs.
        """
        folder = Path(folder)
        library = cls(folder=folder)
        if not folder.is_dir():
            message = "persona folder not found"
            log.error("persona folder %s: %s", folder, message)
            library.errors.append((folder, message))
            return library
        files = sorted(
            (
                p
                for p in folder.iterdir()
                if p.suffix.lower() in PERSONA_SUFFIXES and not p.name.startswith(".") and p.is_file()
            ),
            key=lambda p: p.name.casefold(),
        )
        for path in files:
            try:
                persona = load_persona(path)
            except PersonaError as exc:
                log.error("persona file skipped: %s", exc)
                library.errors.append((path, exc.message))
                continue
            library._add(persona)
        log.info("loaded %d persona(s) from %s (%d broken)", len(library), folder, len(library.errors))
        return library

    def get(self, name: str) -> Persona | None:
        return self._by_key.get(name.strip().casefold())

    def names(self) -> list[str]:
        return sorted((p.name for p in self._by_key.values()), key=str.casefold)

    def search(self, text: str, limit: int = AUTOCOMPLETE_LIMIT) -> list[Persona]:
        """Personas whose name starts with `text`, then those containing it (name or tags); at most `limit`."""
        needle = text.strip().casefold()
        ordered = sorted(self._by_key.values(), key=lambda p: p.name.casefold())
        prefix = [p for p in ordered if p.name.casefold().startswith(needle)]
        inner = [
            p
            for p in ordered
            if p not in prefix and (needle in p.name.casefold() or any(needle in t.casefold() for t in p.tags))
        ]
        return (prefix + inner)[: max(0, min(limit, AUTOCOMPLETE_LIMIT))]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Persona]:
        return iter(sorted(self._by_key.values(), key=lambda p: p.name.casefold()))


def format_errors(errors: Sequence[tuple[Path, str]]) -> list[str]:
    """One line per broken file: `name.toml: field 'x': detail`."""
    return [f"{Path(p).name}: {m}" for p, m in errors]
