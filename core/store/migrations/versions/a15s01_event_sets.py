"""event sets: event-level data of journeys data sets as Parquet under a storage location

Revision ID: a15s01_event_sets
Revises: a12t01
"""
import uuid

import sqlalchemy as sa
from alembic import op

import core.store.models

revision = "a15s01_event_sets"
down_revision = "a13_autopilot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    settings = op.create_table(
        "store_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "event_sets",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("touchpoints", sa.BigInteger(), nullable=False),
        sa.Column("conversions", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", core.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("event_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_sets_workspace_id"), ["workspace_id"], unique=False)
    # This database's own folder under a (possibly shared) storage location.
    op.bulk_insert(settings, [{"key": "event_store_instance", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    with op.batch_alter_table("event_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_sets_workspace_id"))
    op.drop_table("event_sets")
    op.drop_table("store_settings")
