"""Memory rows in the database: facts and call summaries per member per guild, and privacy choices.

Every method is one transaction (`Database.transaction`): it happens whole or not at all, and a
failure comes out as a `StorageError`. Full-text search is FTS5 (porter stemming) on SQLite and a
`tsvector` (english) on PostgreSQL; both rank by relevance (bm25; ts_rank normalized by length,
so a short fact on the point beats a long summary).

A member who opted out has exactly one row here: (guild id, user id, opted out). Opting out, `/memory forget`
and leaving the server (after the grace period) delete everything else about them: their rows, the call summaries
of others made from their lines (found by user id in `memory_sources`), and their name in others' rows that carry
no sources (facts; summaries stored before sources were kept), by its spoken forms.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from memory.departure_marks import DepartureMarks
from memory.extract import Fact
from storage.db import Database, upsert
from storage.schema import FACT, SUMMARY, guild_settings, member_privacy, memories, memory_sources

MAX_SEARCH_TERMS = 12
STOPWORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves yeah yes okay ok oh um uh hey hi hello well like really know
think tell told say said remember remembered recall ask asked talk talked mention mentioned thing things something
anything juniper bot please thanks thank again let lets let's me i'm i've i'd you're it's that's what's don't didn't
""".split()
)


def spoken_forms(names: Iterable[str]) -> list[str]:
    """How members' names appear in transcribed speech: a display name's decorations dropped and its words
    capitalized ("~kat~" -> "Kat"), at least 2 characters."""
    forms = []
    for name in names:
        words = re.sub(r"[^\w' -]+", " ", name or "").replace("_", " ").split()
        form = " ".join(w[:1].upper() + w[1:] for w in words)  # transcripts write names capitalized
        if len(form) >= 2 and form not in forms:
            forms.append(form)
    return forms


def name_patterns(names: Iterable[str]) -> list[re.Pattern[str]]:
    """Whole-word, case-sensitive patterns of `spoken_forms`: a name is written with its capital, so a member
    named "will" or "May" does not rewrite the words "will" and "may" in everyone's memories."""
    return [re.compile(rf"\b{re.escape(form)}\b") for form in spoken_forms(names)]


@dataclass(frozen=True, slots=True)
class Memory:
    id: int
    guild_id: int
    user_id: int
    kind: str  # FACT or SUMMARY
    key: str
    text: str
    created_at: float
    updated_at: float
    score: float = 0.0  # relevance to a search (higher is better), 0 outside searches


def search_terms(text: str) -> list[str]:
    """The words of `text` worth searching for: lower-case, no stopwords, each once, in order."""
    out: list[str] = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if len(word) < 2 or word in STOPWORDS or word in out:
            continue
        out.append(word)
    return out[:MAX_SEARCH_TERMS]


def _row(row: sa.RowMapping, score: float = 0.0) -> Memory:
    return Memory(
        int(row["id"]),
        int(row["guild_id"]),
        int(row["user_id"]),
        row["kind"],
        row["key"],
        row["text"],
        float(row["created_at"]),
        float(row["updated_at"]),
        score,
    )


class MemoryStore(DepartureMarks):
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing ------------------------------------------------------------------------------------
    async def remember_facts(
        self, guild_id: int, user_id: int, facts: Sequence[Fact], *, now: float | None = None
    ) -> int:
        """Store facts (a fact with the same key replaces the old one; repeating it renews it)."""
        if not facts:
            return 0
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            if not await self._may_remember(conn, guild_id, user_id):
                return 0
            for fact in facts:
                row = {
                    "guild_id": guild_id,
                    "user_id": user_id,
                    "kind": FACT,
                    "key": fact.key[:200],
                    "text": fact.text,
                    "created_at": now,
                    "updated_at": now,
                }
                await conn.execute(
                    upsert(self.db.dialect, memories, row, ["guild_id", "user_id", "key"], ["text", "updated_at"])
                )
        return len(facts)

    async def add_summary(
        self,
        guild_id: int,
        user_id: int,
        key: str,
        text: str,
        *,
        now: float | None = None,
        heard: Iterable[int] | None = None,
    ) -> bool:
        """Store a member's call summary; `heard`: the members whose lines it was made from (kept as its sources
        with its owner; None: unknown, then forgetting a member looks for their names in it)."""
        now = time.time() if now is None else now
        async with self.db.transaction() as conn:
            if not await self._may_remember(conn, guild_id, user_id):
                return False
            row = {
                "guild_id": guild_id,
                "user_id": user_id,
                "kind": SUMMARY,
                "key": key[:200],
                "text": text,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(
                upsert(self.db.dialect, memories, row, ["guild_id", "user_id", "key"], ["text", "updated_at"])
            )
            if heard is not None:
                memory_id = (
                    await conn.execute(
                        sa.select(memories.c.id).where(
                            memories.c.guild_id == guild_id, memories.c.user_id == user_id, memories.c.key == key[:200]
                        )
                    )
                ).scalar_one()
                await conn.execute(sa.delete(memory_sources).where(memory_sources.c.memory_id == memory_id))
                await conn.execute(
                    sa.insert(memory_sources),
                    [{"memory_id": memory_id, "user_id": uid} for uid in sorted({user_id, *heard})],
                )
        return True

    # -- reading ------------------------------------------------------------------------------------
    async def about(self, guild_id: int, user_id: int) -> list[Memory]:
        """Everything remembered about one member, facts first, newest first."""
        async with self.db.transaction() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(memories)
                        .where(memories.c.guild_id == guild_id, memories.c.user_id == user_id)
                        .order_by(memories.c.kind, memories.c.updated_at.desc(), memories.c.id.desc())
                    )
                )
                .mappings()
                .all()
            )
        return [_row(r) for r in rows]

    async def members_memories(
        self, guild_id: int, user_ids: Iterable[int], *, limit_per_member: int = 40, before: float | None = None
    ) -> list[Memory]:
        """The newest memories of each of these members (facts and summaries), newest first; with `before`,
        only those first stored before that time (epoch seconds)."""
        ids = sorted(set(user_ids))
        if not ids:
            return []
        since = [memories.c.created_at < before] if before is not None else []
        async with self.db.transaction() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(memories)
                        .where(memories.c.guild_id == guild_id, memories.c.user_id.in_(ids), *since)
                        .order_by(memories.c.updated_at.desc(), memories.c.id.desc())
                        .limit(limit_per_member * len(ids))
                    )
                )
                .mappings()
                .all()
            )
        return [_row(r) for r in rows]

    async def search(
        self, guild_id: int, user_ids: Iterable[int], text: str, *, limit: int = 8, before: float | None = None
    ) -> list[Memory]:
        """Memories of these members that match the words of `text`, most relevant first; with `before`, only
        those first stored before that time (epoch seconds)."""
        ids = sorted(set(user_ids))
        terms = search_terms(text)
        if not ids or not terms:
            return []
        before_sql = " AND m.created_at < :before" if before is not None else ""
        async with self.db.transaction() as conn:
            if self.db.dialect == "postgresql":
                query = sa.text(
                    "SELECT m.*, ts_rank(m.search, q, 1) AS score FROM memories m, to_tsquery('english', :q) q "
                    "WHERE m.search @@ q AND m.guild_id = :guild AND m.user_id IN :users"
                    + before_sql
                    + " ORDER BY score DESC, m.updated_at DESC LIMIT :limit"
                ).bindparams(sa.bindparam("users", expanding=True))
                params = {"q": " | ".join(terms), "guild": guild_id, "users": ids, "limit": limit, "before": before}
                rows = (await conn.execute(query, params)).mappings().all()
                return [_row(r, float(r["score"])) for r in rows]
            query = sa.text(
                "SELECT m.*, -bm25(memories_fts) AS score FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid "
                "WHERE memories_fts MATCH :q AND m.guild_id = :guild AND m.user_id IN :users"
                + before_sql
                + " ORDER BY score DESC, m.updated_at DESC LIMIT :limit"
            ).bindparams(sa.bindparam("users", expanding=True))
            params = {
                "q": " OR ".join(f'"{t}"' for t in terms),
                "guild": guild_id,
                "users": ids,
                "limit": limit,
                "before": before,
            }
            rows = (await conn.execute(query, params)).mappings().all()
        return [_row(r, float(r["score"])) for r in rows]

    async def count_about(self, guild_id: int, user_id: int) -> int:
        async with self.db.transaction() as conn:
            return int(
                (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(memories)
                        .where(memories.c.guild_id == guild_id, memories.c.user_id == user_id)
                    )
                ).scalar_one()
            )

    # -- forgetting -----------------------------------------------------------------------------------
    async def forget_member(self, guild_id: int, user_id: int, names: Iterable[str] = ()) -> int:
        """Delete everything about a member in a guild (`_erase_member`). Returns their rows deleted."""
        async with self.db.transaction() as conn:
            deleted = await self._erase_member(conn, guild_id, user_id, names)
        await self.db.scrub_deleted()
        return deleted

    async def _erase_member(self, conn: AsyncConnection, guild_id: int, user_id: int, names: Iterable[str]) -> int:
        """Every memory of the member in the guild, the summaries of others made from their lines (by id: their
        words may be in them), and their names in others' rows that carry no sources (replaced by "someone").
        Returns the member's own rows deleted."""
        deleted = (
            await conn.execute(
                sa.delete(memories).where(memories.c.guild_id == guild_id, memories.c.user_id == user_id)
            )
        ).rowcount or 0
        heard_them = sa.select(memory_sources.c.memory_id).where(memory_sources.c.user_id == user_id)
        await conn.execute(sa.delete(memories).where(memories.c.guild_id == guild_id, memories.c.id.in_(heard_them)))
        await self._scrub_names(conn, guild_id, names)
        return int(deleted)

    async def _scrub_names(self, conn: AsyncConnection, guild_id: int, names: Iterable[str]) -> None:
        """The names' spoken forms (whole words, case-sensitive) replaced in the guild's rows without sources:
        a summary with sources holds only the words of the members it lists (found by id instead)."""
        forms = spoken_forms(names)
        if not forms:
            return
        patterns = name_patterns(forms)
        like = sa.or_(*[memories.c.text.ilike(f"%{form}%") for form in forms])
        has_sources = sa.exists().where(memory_sources.c.memory_id == memories.c.id)
        rows = (
            await conn.execute(
                sa.select(memories.c.id, memories.c.text).where(memories.c.guild_id == guild_id, like, ~has_sources)
            )
        ).all()
        for row_id, text in rows:
            new = text
            for pattern in patterns:
                new = pattern.sub("someone", new)
            if new != text:
                await conn.execute(sa.update(memories).where(memories.c.id == row_id).values(text=new))

    async def purge(self, older_than: float) -> int:
        """Delete memories not renewed since `older_than` (epoch seconds). Returns the rows deleted."""
        async with self.db.transaction() as conn:
            result = await conn.execute(sa.delete(memories).where(memories.c.updated_at < older_than))
        if result.rowcount:
            await self.db.scrub_deleted()
        return int(result.rowcount or 0)

    # -- privacy --------------------------------------------------------------------------------------
    async def set_opted_out(self, guild_id: int, user_id: int, opted_out: bool, names: Iterable[str] = ()) -> int:
        """Record the member's choice. Opting out also deletes what is remembered about them (returns the count)."""
        deleted = 0
        async with self.db.transaction() as conn:
            if opted_out:
                deleted = await self._erase_member(conn, guild_id, user_id, names)
                row = {"guild_id": guild_id, "user_id": user_id, "opted_out": True, "changed_at": time.time()}
                await conn.execute(
                    upsert(self.db.dialect, member_privacy, row, ["guild_id", "user_id"], ["opted_out", "changed_at"])
                )
            else:  # opted in again: nothing about them needs keeping, not even the choice
                await conn.execute(
                    sa.delete(member_privacy).where(
                        member_privacy.c.guild_id == guild_id, member_privacy.c.user_id == user_id
                    )
                )
        if opted_out:
            await self.db.scrub_deleted()
        return int(deleted)

    async def opted_out(self, guild_id: int | None = None) -> dict[int, set[int]]:
        """{guild id: user ids who opted out} for every guild, or for one."""
        query = sa.select(member_privacy.c.guild_id, member_privacy.c.user_id).where(
            member_privacy.c.opted_out.is_(True)
        )
        if guild_id is not None:
            query = query.where(member_privacy.c.guild_id == guild_id)
        async with self.db.transaction() as conn:
            rows = (await conn.execute(query)).all()
        out: dict[int, set[int]] = {}
        for guild_id, user_id in rows:
            out.setdefault(int(guild_id), set()).add(int(user_id))
        return out

    async def _may_remember(self, conn: AsyncConnection, guild_id: int, user_id: int) -> bool:
        """Inside the write's transaction: the member has not opted out and memory is not off in the guild."""
        opted_out = (
            await conn.execute(
                sa.select(member_privacy.c.opted_out).where(
                    member_privacy.c.guild_id == guild_id, member_privacy.c.user_id == user_id
                )
            )
        ).scalar_one_or_none()
        enabled = (
            await conn.execute(sa.select(guild_settings.c.memory_enabled).where(guild_settings.c.guild_id == guild_id))
        ).scalar_one_or_none()
        return not opted_out and enabled is not False
