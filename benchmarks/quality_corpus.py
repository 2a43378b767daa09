"""The reply-quality corpora (`benchmarks/corpora/quality_*.toml`): prompts, running conversations, rubrics.

The format is described at the top of `benchmarks/corpora/quality_tuning.toml`. Loading validates every
field and raises `CorpusError` naming the file and the item, so a typo in a rubric never silently turns a
check off.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

CORPUS_DIR = Path(__file__).resolve().parent / "corpora"
PARTS = ("tuning", "heldout")
CATEGORIES = (
    "name_start",
    "name_middle",
    "name_end",
    "alone",
    "group",
    "follow_up",
    "small_talk",
    "greeting",
    "goodbye",
    "idle",
    "persona",
)
ACTIONS = ("respond", "greet", "farewell", "idle")
QUESTION_KIND = "question"
DEFAULT_PERSONA = "Juniper"


class CorpusError(ValueError):
    """A corpus file cannot be used: `<file>: <item>: <what is wrong>`."""


@dataclass(frozen=True)
class Rubric:
    """What an on-topic reply contains: one of `any` (words or phrases), or a word of one of `kinds`."""

    any: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.any and not self.kinds


@dataclass(frozen=True)
class ContextLine:
    speaker: str
    text: str


@dataclass(frozen=True)
class Prompt:
    """One prompt asked on its own, in a fresh room with `members` and the earlier lines `context`."""

    id: str
    category: str
    persona: str
    members: tuple[str, ...]
    speaker: str | None
    text: str
    action: str
    addressed: bool
    context: tuple[ContextLine, ...]
    rubric: Rubric


@dataclass(frozen=True)
class Turn:
    """One member's line of a running conversation; `reply`: the bot answers it."""

    speaker: str
    text: str
    reply: bool
    addressed: bool | None  # None: spoken to the bot when it names the bot (else the bot joins in)
    rubric: Rubric


@dataclass(frozen=True)
class Conversation:
    id: str
    persona: str
    members: tuple[str, ...]
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Corpus:
    part: str
    path: Path
    kinds: Mapping[str, tuple[str, ...]]
    prompts: tuple[Prompt, ...]
    conversations: tuple[Conversation, ...]
    names: frozenset[str] = field(default_factory=frozenset)  # every member name of the file


def _text(where: str, item: Mapping[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    value = item.get(key, None)
    if value is None:
        if required:
            raise CorpusError(f"{where}: '{key}' is missing")
        return default
    if not isinstance(value, str) or (required and not value.strip()):
        raise CorpusError(f"{where}: '{key}' must be non-empty text, got {value!r}")
    return value.strip()


def _words(where: str, item: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CorpusError(f"{where}: '{key}' must be a list of non-empty text")
    return tuple(v.strip().lower() for v in value)


def _rubric(where: str, item: Mapping[str, Any], kinds: Mapping[str, tuple[str, ...]]) -> Rubric:
    rubric = Rubric(any=_words(where, item, "any"), kinds=_words(where, item, "kinds"))
    unknown = [k for k in rubric.kinds if k not in kinds]
    if unknown:
        raise CorpusError(f"{where}: unknown kind(s) {', '.join(unknown)} (known: {', '.join(sorted(kinds))})")
    return rubric


def _check_keys(where: str, item: Mapping[str, Any], known: set[str]) -> None:
    extra = sorted(set(item) - known)
    if extra:
        raise CorpusError(f"{where}: unknown field(s) {', '.join(extra)}")


def load_corpus(part: str = "tuning", path: Path | None = None) -> Corpus:
    """Load and validate one part (`tuning` or `heldout`)."""
    path = path or CORPUS_DIR / f"quality_{part}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CorpusError(f"{path}: {exc}") from None
    default_members = tuple(data.get("members", ()))
    raw_kinds = data.get("kinds", {})
    kinds = {name: _words(f"{path.name}: kinds", raw_kinds, name) for name in raw_kinds}
    names = set(default_members)
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for i, item in enumerate(data.get("prompt", [])):
        where = f"{path.name}: prompt[{i}]"
        _check_keys(
            where,
            item,
            {
                "id",
                "category",
                "persona",
                "members",
                "speaker",
                "text",
                "action",
                "addressed",
                "context",
                "any",
                "kinds",
            },
        )
        pid = _text(where, item, "id")
        where = f"{path.name}: prompt {pid!r}"
        if pid in seen:
            raise CorpusError(f"{where}: duplicate id")
        seen.add(pid)
        category = _text(where, item, "category")
        if category not in CATEGORIES:
            raise CorpusError(f"{where}: category {category!r} is not one of {', '.join(CATEGORIES)}")
        action = _text(where, item, "action", required=False, default="respond")
        if action not in ACTIONS:
            raise CorpusError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
        members = tuple(item.get("members", default_members))
        names.update(members)
        speaker = item.get("speaker")
        if action != "idle" and speaker not in members:
            raise CorpusError(f"{where}: speaker {speaker!r} is not among the members {members}")
        text = _text(where, item, "text", required=action == "respond")
        persona = _text(where, item, "persona", required=False, default=DEFAULT_PERSONA)
        context = tuple(
            ContextLine(_text(where, c, "speaker"), _text(where, c, "text")) for c in item.get("context", [])
        )
        rubric = _rubric(where, item, kinds)
        if rubric.empty:
            raise CorpusError(f"{where}: no rubric ('any' or 'kinds')")
        prompts.append(
            Prompt(
                id=pid,
                category=category,
                persona=persona,
                members=members,
                speaker=speaker,
                text=text,
                action=action,
                addressed=bool(item.get("addressed", category != "group")),
                context=context,
                rubric=rubric,
            )
        )
    conversations: list[Conversation] = []
    for i, item in enumerate(data.get("conversation", [])):
        cid = _text(f"{path.name}: conversation[{i}]", item, "id")
        where = f"{path.name}: conversation {cid!r}"
        members = tuple(item.get("members", default_members))
        names.update(members)
        turns = []
        for j, raw in enumerate(item.get("turns", [])):
            twhere = f"{where} turn {j + 1}"
            _check_keys(twhere, raw, {"speaker", "text", "reply", "addressed", "any", "kinds"})
            speaker = _text(twhere, raw, "speaker")
            if speaker not in members:
                raise CorpusError(f"{twhere}: speaker {speaker!r} is not among the members {members}")
            rubric = _rubric(twhere, raw, kinds)
            reply = bool(raw.get("reply", False))
            if reply and rubric.empty:
                raise CorpusError(f"{twhere}: a turn the bot answers needs a rubric")
            turns.append(
                Turn(
                    speaker=speaker,
                    text=_text(twhere, raw, "text"),
                    reply=reply,
                    addressed=raw.get("addressed"),
                    rubric=rubric,
                )
            )
        conversations.append(
            Conversation(
                id=cid,
                persona=_text(where, item, "persona", required=False, default=DEFAULT_PERSONA),
                members=members,
                turns=tuple(turns),
            )
        )
    return Corpus(
        part=part,
        path=path,
        kinds=kinds,
        prompts=tuple(prompts),
        conversations=tuple(conversations),
        names=frozenset(names),
    )
