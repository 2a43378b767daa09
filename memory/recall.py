"""The memories relevant to a reply, as one prompt block within its token budget.

For the members present, the candidates are: what matches the words just said (full-text search,
most relevant first), then per member what to call them, their last call's summary (a returning member
can be greeted with something from last time), then their other facts, newest first. Candidates are
taken in that order while the rendered block fits `budget_tokens`; the block lists them per member in
a stable order, so the prompt stays the same (and cached by the LLM) while nothing new is relevant.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from memory.store import Memory, MemoryStore
from storage.schema import FACT, SUMMARY

HEADER = "You remember from earlier calls:"
FOOTER = "Bring it up only when it fits what is said now; never list it."
_POSSESSIVE = (
    "sister",
    "brother",
    "mom",
    "mother",
    "mum",
    "dad",
    "father",
    "wife",
    "husband",
    "partner",
    "girlfriend",
    "boyfriend",
    "son",
    "daughter",
    "kid",
    "friend",
    "best",
    "roommate",
    "grand",
    "aunt",
    "uncle",
    "cousin",
    "niece",
    "nephew",
    "boss",
    "dog",
    "cat",
    "puppy",
    "kitten",
    "parents",
    "family",
    "fiance",
    "twin",
    "neighbo",
    "favorite",
    "favourite",
    "birthday",
    "name",
)
SEARCH_LIMIT = 8


def ago(t: float, now: float) -> str:
    days = (now - t) / 86400.0
    if days < 0.5:
        return "earlier today"
    if days < 1.5:
        return "yesterday"
    if days < 14:
        return f"{round(days)} days ago"
    if days < 60:
        return f"{round(days / 7)} weeks ago"
    return f"{round(days / 30)} months ago"


def sentence(name: str, memory: Memory, now: float) -> str:
    """A stored predicate ("sister Hana is a vet", "loves jazz") as a sentence about the member."""
    text = memory.text.strip().rstrip(".")
    if memory.kind == SUMMARY:
        return f"In a call {ago(memory.updated_at, now)}, {name} {text}."
    if text.lower().startswith(_POSSESSIVE):
        return f"{name}'s {text}."
    if ":" in text.split(" ")[0] or text[:1].isdigit():
        return f"{name}, {text}."
    return f"{name} {text}."


def render_block(members: Sequence[tuple[int, str]], chosen: Sequence[Memory], now: float) -> str:
    """The prompt block for `chosen` memories: per member, facts then calls, as plain sentences."""
    sentences = []
    for user_id, name in members:
        mine = sorted((m for m in chosen if m.user_id == user_id), key=lambda m: (m.kind != FACT, m.id))
        sentences += [sentence(name, m, now) for m in mine]
    return " ".join([HEADER, *sentences, FOOTER]) if sentences else ""


def candidates(members: Sequence[tuple[int, str]], hits: Sequence[Memory], known: Sequence[Memory]) -> list[Memory]:
    """Memories in the order they earn a place in the block (see the module doc)."""
    order: list[Memory] = list(hits)
    by_member = {uid: [m for m in known if m.user_id == uid] for uid, _ in members}
    for uid, _ in members:
        mine = sorted(by_member[uid], key=lambda m: -m.updated_at)
        order += [m for m in mine if m.kind == FACT and m.key == "name"]
        order += [m for m in mine if m.kind == SUMMARY][:1]
    for uid, _ in members:
        mine = sorted(by_member[uid], key=lambda m: -m.updated_at)
        order += [m for m in mine if m.kind == FACT]
    for uid, _ in members:
        order += sorted((m for m in by_member[uid] if m.kind == SUMMARY), key=lambda m: -m.updated_at)
    seen: set[int] = set()
    unique = []
    for m in order:
        if m.id not in seen:
            seen.add(m.id)
            unique.append(m)
    return unique


def fit(
    members: Sequence[tuple[int, str]],
    ordered: Sequence[Memory],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    now: float,
) -> str:
    """The block of as many of `ordered` (in order) as fit `budget_tokens`."""
    chosen: list[Memory] = []
    block = ""
    for memory in ordered:
        trial = render_block(members, [*chosen, memory], now)
        if count_tokens(trial) > budget_tokens:
            continue  # a shorter one further down may still fit
        chosen.append(memory)
        block = trial
    return block


class Recall:
    """Builds the memory block for a reply from the store."""

    def __init__(self, store: MemoryStore, *, budget_tokens: int, count_tokens: Callable[[str], int]) -> None:
        self.store = store
        self.budget_tokens = budget_tokens
        self.count_tokens = count_tokens

    async def block(
        self,
        guild_id: int,
        members: Sequence[tuple[int, str]],
        query: str,
        *,
        now: float | None = None,
        before: float | None = None,
    ) -> str:
        """The block for a reply; with `before` (the call's start), only memories from earlier calls: what was
        said in this call is in the conversation history already."""
        if not members or self.budget_tokens <= 0:
            return ""
        now = time.time() if now is None else now
        ids = [uid for uid, _ in members]
        hits = await self.store.search(guild_id, ids, query, limit=SEARCH_LIMIT, before=before) if query.strip() else []
        known = await self.store.members_memories(guild_id, ids, before=before)
        return fit(members, candidates(members, hits, known), self.budget_tokens, self.count_tokens, now)
