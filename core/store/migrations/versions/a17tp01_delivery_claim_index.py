"""conversion outbox: a claim index (workspace, destination, status, next attempt) replaces (workspace, destination, status)

The dispatcher takes due rows of one workspace and destination in the order they fell due; with the
next attempt time in the index a claim reads exactly the rows it takes, in order, without sorting the
whole backlog (the old index left SQLite scanning every pending row of every destination per claim).

Revision ID: a17tp01_delivery_claim_index
Revises: a10c1e7d2b3f
"""
from alembic import op

revision = "a17tp01_delivery_claim_index"
down_revision = "a14c7e2b91d0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversion_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_claim", ["workspace_id", "destination", "status", "next_attempt_at"], unique=False)
        batch_op.drop_index("ix_delivery_workspace_status")


def downgrade() -> None:
    with op.batch_alter_table("conversion_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_workspace_status", ["workspace_id", "destination", "status"], unique=False)
        batch_op.drop_index("ix_delivery_claim")
