"""stored credentials: platform credentials entered on the Connections page, encrypted at rest

Revision ID: a10c1e7d2b3f
Revises: 85dfa2048fa7
Create Date: 2026-12-01 17:00:00
"""
from alembic import op
import sqlalchemy as sa
import core.store.models


revision = 'a10c1e7d2b3f'
down_revision = 'a9_01_perf_parents_mappings'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stored_credentials',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('platform', sa.String(length=120), nullable=False),
        sa.Column('ciphertext', sa.Text(), nullable=False),
        sa.Column('hints', sa.JSON(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', core.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('workspace_id', 'platform', name='uq_stored_credential'),
    )
    with op.batch_alter_table('stored_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stored_credentials_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stored_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stored_credentials_workspace_id'))
    op.drop_table('stored_credentials')
