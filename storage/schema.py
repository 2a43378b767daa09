"""The tables chorus keeps (SQLAlchemy Core). Alembic migrations in `storage/migrations` create them.

Times are epoch seconds (UTC) as floats: the same comparisons on SQLite and PostgreSQL.
Discord ids are 64-bit integers.

- `guild_settings`: per-guild choices (persona, captions channel, whether memory is on, whose memories a reply
  may recall: `present` or `speaker`).
- `member_privacy`: who opted out of being listened to, per guild: two ids and a flag, nothing else.
- `memories`: what the bot remembers about a member of a guild: facts they told about themselves
  (`kind` = "fact", `key` names the slot, e.g. "name" or "likes:jazz") and call summaries
  (`kind` = "summary", `key` = "call:<call id>:<part>"). Full-text indexed: an FTS5 table kept by
  triggers on SQLite, a generated `tsvector` column on PostgreSQL.
- `memory_sources`: for a call summary, the members whose lines it was made from (its owner and the others
  heard in that part of the call), by user id: forgetting a member finds the summaries that hold their words by
  id. Rows without sources (facts, summaries stored before 0003) are searched for the member's spoken names.
- `storage_meta`: small key/value facts about the store itself (e.g. when guilds.json was imported, when the bot
  was removed from a server or a member left one: the deletions after `REMOVAL_GRACE_DAYS`).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

guild_settings = sa.Table(
    "guild_settings",
    metadata,
    sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("persona", sa.Text, nullable=True),
    sa.Column("captions_channel_id", sa.BigInteger, nullable=True),
    sa.Column("memory_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("recall", sa.String(16), nullable=False, server_default="present"),  # RECALL_SCOPES (0002)
)

member_privacy = sa.Table(
    "member_privacy",
    metadata,
    sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)

memories = sa.Table(
    "memories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("guild_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("guild_id", "user_id", "key", name="uq_memories_member_key"),
    sa.Index("ix_memories_member", "guild_id", "user_id"),
    sa.Index("ix_memories_updated_at", "updated_at"),
)

memory_sources = sa.Table(
    "memory_sources",
    metadata,
    sa.Column("memory_id", sa.Integer, sa.ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Index("ix_memory_sources_user", "user_id"),
)  # 0003; on SQLite a trigger deletes a memory's sources with it

storage_meta = sa.Table(
    "storage_meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

RECALL_SCOPES = ("present", "speaker")  # memories of every member in the call / only of the member answered
FACT = "fact"
SUMMARY = "summary"
