"""access: workspace members and roles, four-eyes thresholds, append-only audit log, schedule authority

Revision ID: a16_access
Revises: a14c7e2b91d0
Create Date: 2026-12-01 18:30:00
"""
from alembic import op
import sqlalchemy as sa
import core.store.models

revision = 'a16_access'
down_revision = 'a17tp01_delivery_claim_index'
branch_labels = None
depends_on = None

UTC = core.store.models.UTCDateTime(timezone=True)
_APPEND_ONLY = "the audit log is append-only"


def upgrade() -> None:
    op.create_table(
        'workspace_members',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=True),
        sa.Column('added_by', sa.String(length=200), nullable=False),
        sa.Column('added_at', UTC, nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('workspace_id', 'email', name='uq_workspace_member'),
    )
    op.create_index('ix_workspace_member_email', 'workspace_members', ['email'], unique=False)
    op.create_index(op.f('ix_workspace_members_workspace_id'), 'workspace_members', ['workspace_id'], unique=False)

    op.create_table(
        'workspace_access',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('four_eyes_total', sa.Numeric(precision=20, scale=6), nullable=True),
        sa.Column('four_eyes_single', sa.Numeric(precision=20, scale=6), nullable=True),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('workspace_id', name='uq_workspace_access'),
    )
    op.create_index(op.f('ix_workspace_access_workspace_id'), 'workspace_access', ['workspace_id'], unique=False)

    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', UTC, nullable=False),
        sa.Column('actor', sa.String(length=300), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('entry_point', sa.String(length=20), nullable=False),
        sa.Column('action', sa.String(length=80), nullable=False),
        sa.Column('target', sa.String(length=300), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_workspace_at', 'audit_log', ['workspace_id', 'at'], unique=False)
    op.create_index(op.f('ix_audit_log_workspace_id'), 'audit_log', ['workspace_id'], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for verb in ('UPDATE', 'DELETE'):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END")
    elif dialect == 'postgresql':
        op.execute(f"""CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$""")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")

    with op.batch_alter_table('autopilot_schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('auto_execute_by', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('auto_execute_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('auto_execute_guardrails', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('autopilot_schedules', schema=None) as batch_op:
        batch_op.drop_column('auto_execute_guardrails')
        batch_op.drop_column('auto_execute_at')
        batch_op.drop_column('auto_execute_by')
        batch_op.drop_column('owner')
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_index(op.f('ix_audit_log_workspace_id'), table_name='audit_log')
    op.drop_index('ix_audit_workspace_at', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_workspace_access_workspace_id'), table_name='workspace_access')
    op.drop_table('workspace_access')
    op.drop_index(op.f('ix_workspace_members_workspace_id'), table_name='workspace_members')
    op.drop_index('ix_workspace_member_email', table_name='workspace_members')
    op.drop_table('workspace_members')
