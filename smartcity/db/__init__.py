"""Database schema, migrations and the storage-mode difference (TimescaleDB or plain PostgreSQL)."""
