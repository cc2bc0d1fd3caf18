"""calibration set events: who retired, reinstated or re-solved a set, when and why

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 12:00:00
"""
from alembic import op
import sqlalchemy as sa
import engine.db.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calibration_set_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('set_name', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('at', engine.db.models.UTCDateTime(), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('calibration_set_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calibration_set_events_set_name'), ['set_name'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('calibration_set_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calibration_set_events_set_name'))
    op.drop_table('calibration_set_events')
