"""alert deliveries: every webhook, Slack or e-mail notification of an alert, with its outcome

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 20:40:00
"""
from alembic import op
import sqlalchemy as sa

import engine.db.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('target', sa.Text(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', engine.db.models.UTCDateTime(), nullable=False),
        sa.Column('finished_at', engine.db.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('alert_deliveries') as batch:
        batch.create_index('ix_alert_deliveries_alert_id', ['alert_id'])
        batch.create_index('ix_alert_deliveries_created_at', ['created_at'])


def downgrade() -> None:
    op.drop_table('alert_deliveries')
