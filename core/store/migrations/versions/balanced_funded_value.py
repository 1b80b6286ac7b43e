"""changes.funded_value: the smaller value an increase was sent with when the decreases funding it did not all apply

Revision ID: balanced_funded_value
Revises: a16_access
Create Date: 2026-12-02 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'balanced_funded_value'
down_revision = 'a16_access'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('funded_value', sa.String(length=60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.drop_column('funded_value')
