"""Which members' lines a stored call summary was made from (`memory_sources`): a member who is forgotten, opts
out or leaves the server is found in others' summaries by id, not by a name.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# SQLite enforces foreign keys only with a per-connection pragma: a trigger deletes the sources with their memory.
SQLITE_CASCADE = ("CREATE TRIGGER memory_sources_delete AFTER DELETE ON memories BEGIN "
                  "DELETE FROM memory_sources WHERE memory_id = old.id; END")


def upgrade() -> None:
    op.create_table(
        "memory_sources",
        sa.Column("memory_id", sa.Integer, sa.ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_index("ix_memory_sources_user", "memory_sources", ["user_id"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_CASCADE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS memory_sources_delete")
    op.drop_index("ix_memory_sources_user", table_name="memory_sources")
    op.drop_table("memory_sources")
