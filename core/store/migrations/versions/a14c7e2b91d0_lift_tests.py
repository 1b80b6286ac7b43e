"""lift tests (attribution calibration to experiments)

Revision ID: a14c7e2b91d0
Revises: a13_autopilot
Create Date: 2026-12-01 16:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import core.store.models


revision = 'a14c7e2b91d0'
down_revision = 'a10c1e7d2b3f'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lift_tests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('incremental_conversions', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', core.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lift_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lift_tests_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lift_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lift_tests_workspace_id'))
    op.drop_table('lift_tests')
