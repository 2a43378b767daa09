"""The database: one data layer over SQLite (embedded default) or PostgreSQL (`DATABASE_URL`).

`storage.db.Database` owns the async engine and runs the Alembic migrations; `storage.schema`
declares the tables; `storage.errors` turns driver failures into one clear line.
"""
