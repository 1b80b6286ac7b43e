"""autopilot: schedules, runs, guardrails + kill switch, glide paths, change outcomes, entity learning state

Revision ID: a13_autopilot
Revises: a12t01
Create Date: 2026-12-01 15:40:00
"""
from alembic import op
import sqlalchemy as sa
import core.store.models

revision = 'a13_autopilot'
down_revision = 'a12t01'
branch_labels = None
depends_on = None

UTC = core.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('ad_entities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('learning_status', sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column('last_significant_edit', UTC, nullable=True))

    op.create_table(
        'autopilot_schedules',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('platform', sa.String(length=30), nullable=False),
        sa.Column('account_id', sa.String(length=64), nullable=False),
        sa.Column('frequency', sa.String(length=10), nullable=False),
        sa.Column('weekday', sa.Integer(), nullable=True),
        sa.Column('time_of_day', sa.String(length=5), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('auto_execute', sa.Boolean(), nullable=False),
        sa.Column('notify_emails', sa.JSON(), nullable=False),
        sa.Column('notify_webhook', sa.Boolean(), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('workspace_id', 'name', name='uq_autopilot_schedule_name'),
    )
    op.create_index('ix_autopilot_schedules_workspace_id', 'autopilot_schedules', ['workspace_id'])

    op.create_table(
        'autopilot_runs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('schedule_id', sa.Integer(), nullable=False),
        sa.Column('due_at', UTC, nullable=False),
        sa.Column('trigger', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('runner', sa.String(length=200), nullable=False),
        sa.Column('started_at', UTC, nullable=False),
        sa.Column('finished_at', UTC, nullable=True),
        sa.Column('plan_ids', sa.JSON(), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['schedule_id'], ['autopilot_schedules.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('schedule_id', 'due_at', name='uq_autopilot_run_slot'),
    )
    op.create_index('ix_autopilot_runs_schedule_id', 'autopilot_runs', ['schedule_id'])
    op.create_index('ix_autopilot_runs_workspace_id', 'autopilot_runs', ['workspace_id'])

    op.create_table(
        'workspace_guardrails',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('limits', sa.JSON(), nullable=False),
        sa.Column('kill_switch', sa.Boolean(), nullable=False),
        sa.Column('kill_note', sa.Text(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('workspace_id', name='uq_workspace_guardrails'),
    )
    op.create_index('ix_workspace_guardrails_workspace_id', 'workspace_guardrails', ['workspace_id'])

    op.create_table(
        'glide_paths',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('platform', sa.String(length=30), nullable=False),
        sa.Column('account_id', sa.String(length=64), nullable=False),
        sa.Column('entity_type', sa.String(length=20), nullable=False),
        sa.Column('external_id', sa.String(length=64), nullable=False),
        sa.Column('entity_name', sa.String(length=300), nullable=False),
        sa.Column('field', sa.String(length=20), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('start_value', sa.String(length=60), nullable=False),
        sa.Column('target_value', sa.String(length=60), nullable=False),
        sa.Column('step_pct', sa.Float(), nullable=False),
        sa.Column('cooldown_days', sa.Float(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('steps', sa.JSON(), nullable=False),
        sa.Column('schedule_id', sa.Integer(), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['schedule_id'], ['autopilot_schedules.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_glide_entity', 'glide_paths', ['workspace_id', 'platform', 'account_id', 'external_id', 'field'])
    op.create_index('ix_glide_paths_workspace_id', 'glide_paths', ['workspace_id'])

    op.create_table(
        'change_outcomes',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('change_id', sa.Integer(), nullable=False),
        sa.Column('plan_id', sa.Integer(), nullable=False),
        sa.Column('change_day', sa.Date(), nullable=False),
        sa.Column('first_day', sa.Date(), nullable=False),
        sa.Column('entity_key', sa.String(length=200), nullable=False),
        sa.Column('prediction', sa.JSON(), nullable=False),
        sa.Column('predicted_at', UTC, nullable=False),
        sa.Column('window_days', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('actual', sa.JSON(), nullable=False),
        sa.Column('evaluated_at', UTC, nullable=True),
        sa.Column('flagged', sa.Boolean(), nullable=False),
        sa.Column('reported_in_run', sa.Integer(), nullable=True),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['change_id'], ['changes.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_id'], ['change_plans.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('change_id'),
    )
    op.create_index('ix_change_outcomes_plan_id', 'change_outcomes', ['plan_id'])
    op.create_index('ix_change_outcomes_entity_key', 'change_outcomes', ['entity_key'])
    op.create_index('ix_change_outcomes_workspace_id', 'change_outcomes', ['workspace_id'])


def downgrade() -> None:
    for table in ('change_outcomes', 'glide_paths', 'workspace_guardrails', 'autopilot_runs', 'autopilot_schedules'):
        op.drop_table(table)
    with op.batch_alter_table('ad_entities', schema=None) as batch_op:
        batch_op.drop_column('last_significant_edit')
        batch_op.drop_column('learning_status')
