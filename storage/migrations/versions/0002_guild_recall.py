"""Per-server recall scope: whose memories a reply may use (`present`: of every member in the call;
`speaker`: only of the member the bot answers).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("guild_settings", sa.Column("recall", sa.String(16), nullable=False, server_default="present"))


def downgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("recall")
