"""Persistence: SQLAlchemy engine/session factory, ORM models, Alembic migrations."""

from .db import DEFAULT_WORKSPACE, make_engine, redact_url, resolve_url, transaction  # noqa: F401
