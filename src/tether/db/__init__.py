"""Storage: engine, tables, Alembic migrations, one store module per aggregate, pubsub."""
