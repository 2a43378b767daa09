"""Character Cards embedded in PNG text chunks (no Pillow: the format is small and we must check CRCs anyway)."""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from conversation.persona import PersonaError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 64 * 1024 * 1024


def iter_png_chunks(blob: bytes, path: Path | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (chunk type, data) for each chunk up to IEND, checking lengths and CRCs."""
    if not blob.startswith(PNG_SIGNATURE):
        raise PersonaError(path, None, "not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(blob):
            raise PersonaError(path, None, f"PNG is truncated at byte {pos} (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", blob[pos : pos + 8])
        end = pos + 8 + length + 4
        if end > len(blob):
            raise PersonaError(path, None, f"PNG chunk {ctype!r} at byte {pos} runs past the end of the file")
        data = blob[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length : end])
        if zlib.crc32(ctype + data) & 0xFFFFFFFF != crc:
            raise PersonaError(
                path, None, f"PNG chunk {ctype.decode('latin-1')!r} at byte {pos} has a bad CRC (file damaged)"
            )
        yield ctype, data
        if ctype == b"IEND":
            return
        pos = end


def png_text_chunks(blob: bytes, path: Path | None = None) -> dict[str, str]:
    """All tEXt / zTXt / iTXt entries of a PNG as {keyword: text} (first of each keyword wins)."""
    out: dict[str, str] = {}
    for ctype, data in iter_png_chunks(blob, path):
        try:
            if ctype == b"tEXt":
                key, _, text = data.partition(b"\0")
                value = text.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = data.partition(b"\0")
                value = zlib.decompress(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = data.partition(b"\0")
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                value = (zlib.decompress(text) if compressed else text).decode("utf-8")
            else:
                continue
        except (zlib.error, IndexError, UnicodeDecodeError) as exc:
            raise PersonaError(path, None, f"PNG {ctype.decode()} chunk cannot be read: {exc}") from None
        out.setdefault(key.decode("latin-1"), value)
    return out


def card_from_png(blob: bytes, path: Path | None = None) -> Any:
    """The Character Card JSON embedded in a PNG (`chara`, else V3's `ccv3`), decoded."""
    texts = png_text_chunks(blob, path)
    keyword = "chara" if "chara" in texts else "ccv3" if "ccv3" in texts else None
    if keyword is None:
        raise PersonaError(path, None, "PNG has no character card (no text chunk with keyword 'chara')")
    try:
        raw = base64.b64decode(texts[keyword].strip(), validate=False)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PersonaError(path, f"png:{keyword}", f"not base64-encoded card JSON: {exc}") from None
