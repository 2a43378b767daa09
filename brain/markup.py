"""Make model text readable by a voice: markdown, emoji, stage directions, URLs and code go.

`clean_text` cleans a complete piece of text; `first_unclosed` tells where a construct opened in
streamed text (an `*action*`, `(aside)`, `[tag]`, `<tag>`, code fence or `<think>` block) is not closed
yet, so a streaming cleaner holds the text from there until it closes (`brain.clean.SpeechCleaner`).
What goes holds for any model: a voice cannot read markup.
"""

from __future__ import annotations

import re

MAX_HOLD_CHARS = 300  # an "opened" construct that never closes is released after this many chars

_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,60}>")
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_BOLD = re.compile(r"(\*\*|__)(.+?)\1", re.S)
_ACTION_STAR = re.compile(r"\*[^*\n]+\*")
_BRACKETED = re.compile(r"\[[^\]\n]*\]")
_PAREN = re.compile(r"\(([^()\n]*)\)")
_UNDERSCORE_EM = re.compile(r"(?<!\w)_([^_\n]+)_(?!\w)")
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_LINE_MARKER = re.compile(r"(?m)^[ \t]*(?:#{1,6}|>+|[-*•+]+|\d{1,3}[.)])(?=\s|$)[ \t]*")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.I)
_EMOTICON = re.compile(r"(?<!\w)[:;=8][-'^]?[()DPpOo3/\\|\]\[*](?!\w)|<3|\^_\^|¯\\_\(ツ\)_/¯")
_LEFTOVER_MARKUP = re.compile(r"[*_~`#|]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:…])")
_REPEATED_COMMA = re.compile(r"(?:,\s*){2,}")


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or 0x1F1E6 <= cp <= 0x1F1FF
        or cp in (0x200D, 0xFE0F, 0xFE0E, 0x20E3)
        or 0xE0020 <= cp <= 0xE007F
    )


def _url_as_speech(match: re.Match[str]) -> str:
    url = match.group(0).rstrip(".,;:!?")
    trailing = match.group(0)[len(url) :]
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.I).split("/")[0].split("?")[0]
    return (host or "a link") + trailing


def _paren(match: re.Match[str]) -> str:
    inner = match.group(1).strip()
    if len(inner.split()) <= 4 and not any(ch.isdigit() for ch in inner):
        return " "  # (smiles), (laughs softly): a stage direction
    return f", {inner}, "


def clean_text(text: str, *, persona_name: str = "") -> str:
    """Clean a complete piece of reply text for TTS (no stop detection; see SpeechCleaner)."""
    text = _FENCE.sub(" ", text)
    text = _THINK.sub(" ", text)
    text = _TAG.sub(" ", text)
    if persona_name:
        own = re.compile(r"(?m)^[ \t]*[*_]*" + re.escape(persona_name) + r"[*_]*[ \t]*:[ \t]*", re.I)
        text = own.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(_url_as_speech, text)
    text = _LINE_MARKER.sub("", text)
    text = _BOLD.sub(r"\2", text)
    text = _ACTION_STAR.sub(" ", text)
    text = _BRACKETED.sub(" ", text)
    text = _PAREN.sub(_paren, text)
    text = _UNDERSCORE_EM.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _EMOTICON.sub(" ", text)
    text = "".join(ch for ch in text if not _is_emoji(ch))
    text = _LEFTOVER_MARKUP.sub(" ", text)
    text = text.replace("(", " ").replace(")", " ")
    # A line that ends without punctuation and is followed by another line ends a sentence there.
    lines = text.split("\n")
    joined: list[str] = []
    for index, line in enumerate(lines):
        line = line.strip()
        if index < len(lines) - 1 and line and line[-1].isalnum():
            line += "."
        joined.append(line)
    text = " ".join(joined)
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMA.sub(", ", text)
    text = text.lstrip(" ,;:")
    return text.strip()


def first_unclosed(raw: str, start: int) -> int | None:
    """Position of the earliest opener in raw[start:] that is not closed yet."""
    # Emoticons ":(" and list markers "* " open nothing; mask them (same length) before scanning.
    raw = _EMOTICON.sub(lambda m: " " * len(m.group(0)), raw)
    raw = _LINE_MARKER.sub(lambda m: " " * len(m.group(0)), raw)
    candidates: list[int] = []
    fences = [m.start() for m in re.finditer(r"```", raw[start:])]
    if len(fences) % 2:
        candidates.append(start + fences[-1])
    for opener, closer in (("(", ")"), ("[", "]")):
        depth = 0
        first = None
        for index in range(start, len(raw)):
            ch = raw[index]
            if ch == opener:
                if depth == 0:
                    first = index
                depth += 1
            elif ch == closer and depth:
                depth -= 1
        if depth and first is not None:
            candidates.append(first)
    stars = [m.start() for m in re.finditer(r"(?<!\*)\*(?!\*)", raw[start:])]
    if len(stars) % 2:
        candidates.append(start + stars[-1])
    doubles = [m.start() for m in re.finditer(r"\*\*", raw[start:])]
    if len(doubles) % 2:
        candidates.append(start + doubles[-1])
    tag = None
    for match in re.finditer(r"<[A-Za-z/]", raw[start:]):
        tag = start + match.start()
    if tag is not None and ">" not in raw[tag:]:
        candidates.append(tag)
    think = raw.lower().rfind("<think>", start)
    if think != -1 and "</think>" not in raw[think:].lower():
        candidates.append(think)
    return min(candidates) if candidates else None
