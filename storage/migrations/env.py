"""Alembic environment: migrations run on the connection `storage.db.Database` hands over.

chorus upgrades its schema itself at start (`Database.open`); there is no separate alembic.ini.
On PostgreSQL an advisory lock makes several bot processes starting at once migrate one at a time.
"""

from __future__ import annotations

from alembic import context

from storage.schema import metadata

MIGRATION_LOCK_ID = 0x63686F72  # "chor"

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("chorus runs its migrations from storage.db.Database.open(), on its own connection")

if connection.dialect.name == "postgresql":
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
