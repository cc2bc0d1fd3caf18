"""Dashboard feature tables: saved queries, backups, triggers, exports, comments, ratings, alerts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 17:41:30.690206
"""
from alembic import op
import sqlalchemy as sa
import engine.db.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_policies',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('for_seconds', sa.Integer(), nullable=False),
    sa.Column('repeat_seconds', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('backup_history',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('backup_path', sa.Text(), nullable=False),
    sa.Column('backup_type', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('completed_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('validation_status', sa.String(length=16), nullable=True),
    sa.Column('validated_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('checksum', sa.String(length=128), nullable=True),
    sa.Column('parent_backup_id', sa.String(length=32), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('request_key', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backup_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backup_history_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_backup_history_request_key'), ['request_key'], unique=False)

    op.create_table('comments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.String(length=255), nullable=False),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.Column('author', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('mentions', sa.JSON(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('resolved', sa.Boolean(), nullable=False),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolved_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('edited', sa.Boolean(), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['comments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comments_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index('ix_comments_target', ['target_type', 'target_id'], unique=False)

    op.create_table('export_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('data_type', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('columns', sa.JSON(), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('file_path', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('completed_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('pipeline_triggers',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('trigger_type', sa.String(length=16), nullable=False),
    sa.Column('schedule', sa.String(length=128), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('schedule_description', sa.Text(), nullable=True),
    sa.Column('event_pattern', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('action_params', sa.Text(), nullable=True),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('max_concurrent', sa.Integer(), nullable=False),
    sa.Column('retry_count', sa.Integer(), nullable=False),
    sa.Column('retry_delay_seconds', sa.Integer(), nullable=False),
    sa.Column('cooldown_seconds', sa.Integer(), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.Column('last_triggered_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('ratings',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.String(length=255), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('flag', sa.String(length=32), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('target_type', 'target_id', 'username', 'category', name='uq_rating_once')
    )
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index('ix_ratings_target', ['target_type', 'target_id'], unique=False)

    op.create_table('review_queue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.String(length=255), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('added_by', sa.String(length=64), nullable=False),
    sa.Column('added_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('target_type', 'target_id', name='uq_review_target')
    )
    op.create_table('saved_queries',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('filters', sa.Text(), nullable=False),
    sa.Column('query_string', sa.Text(), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('visibility', sa.String(length=16), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('run_count', sa.Integer(), nullable=False),
    sa.Column('last_run_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('forked_from', sa.String(length=32), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('saved_queries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saved_queries_target_type'), ['target_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_saved_queries_visibility'), ['visibility'], unique=False)

    op.create_table('alert_silences',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('policy_id', sa.String(length=32), nullable=False),
    sa.Column('starts_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('ends_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['policy_id'], ['alert_policies.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alert_silences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_silences_policy_id'), ['policy_id'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_type', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=True),
    sa.Column('calibrator_name', sa.String(length=64), nullable=True),
    sa.Column('policy_id', sa.String(length=32), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('triggered_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('acknowledged', sa.Boolean(), nullable=False),
    sa.Column('acknowledged_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['policy_id'], ['alert_policies.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_triggered_at'), ['triggered_at'], unique=False)

    op.create_table('restore_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('backup_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('items_restored', sa.Integer(), nullable=False),
    sa.Column('items_total', sa.Integer(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('started_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('completed_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('started_by', sa.String(length=64), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['backup_id'], ['backup_history.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('restore_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_restore_jobs_backup_id'), ['backup_id'], unique=False)

    op.create_table('saved_query_favorites',
    sa.Column('query_id', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['query_id'], ['saved_queries.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('query_id', 'username')
    )
    op.create_table('saved_query_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('query_id', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('run_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['query_id'], ['saved_queries.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('saved_query_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saved_query_runs_query_id'), ['query_id'], unique=False)

    op.create_table('trigger_executions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('trigger_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('event_data', sa.JSON(), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=True),
    sa.Column('started_at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('completed_at', engine.db.models.UTCDateTime(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['trigger_id'], ['pipeline_triggers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('trigger_executions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trigger_executions_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_trigger_executions_trigger_id'), ['trigger_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trigger_executions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trigger_executions_trigger_id'))
        batch_op.drop_index(batch_op.f('ix_trigger_executions_started_at'))

    op.drop_table('trigger_executions')
    with op.batch_alter_table('saved_query_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saved_query_runs_query_id'))

    op.drop_table('saved_query_runs')
    op.drop_table('saved_query_favorites')
    with op.batch_alter_table('restore_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_restore_jobs_backup_id'))

    op.drop_table('restore_jobs')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_triggered_at'))

    op.drop_table('alerts')
    with op.batch_alter_table('alert_silences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_silences_policy_id'))

    op.drop_table('alert_silences')
    with op.batch_alter_table('saved_queries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saved_queries_visibility'))
        batch_op.drop_index(batch_op.f('ix_saved_queries_target_type'))

    op.drop_table('saved_queries')
    op.drop_table('review_queue')
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index('ix_ratings_target')

    op.drop_table('ratings')
    op.drop_table('pipeline_triggers')
    op.drop_table('export_jobs')
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_index('ix_comments_target')
        batch_op.drop_index(batch_op.f('ix_comments_parent_id'))

    op.drop_table('comments')
    with op.batch_alter_table('backup_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backup_history_request_key'))
        batch_op.drop_index(batch_op.f('ix_backup_history_created_at'))

    op.drop_table('backup_history')
    op.drop_table('alert_policies')
