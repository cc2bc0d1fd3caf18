"""listing versions: per-listing change counters kept by triggers

The REST listings (/jobs, /images, /sources, /queries) are served from cached bytes
that are rebuilt only when this counter moves. Triggers keep it exact for every
writer — the engine, the CLI in another process, a restore — at the cost of one
indexed UPDATE per changed row. SQLite gets plain triggers, PostgreSQL a PL/pgSQL
function and row triggers (engine/db/listing_triggers.py generates both).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 20:30:00
"""
from alembic import op
import sqlalchemy as sa

from engine.db.listing_triggers import LISTING_TRIGGERS, drop_statements, create_statements

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'listing_versions',
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False, server_default='0'),
        sa.PrimaryKeyConstraint('kind'),
    )
    op.bulk_insert(sa.table('listing_versions', sa.column('kind', sa.String), sa.column('version', sa.Integer)),
                   [{'kind': kind, 'version': 0} for kind in LISTING_TRIGGERS])
    for statement in create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table('listing_versions')
