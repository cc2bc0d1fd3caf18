"""backup kind and start time: schedules, retention and metrics per kind of backup

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 20:20:00
"""
import json

from alembic import op
import sqlalchemy as sa

import engine.db.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

FILE_SCOPES = ("measurement_sets", "images", "catalogs", "pipeline_configs")


def upgrade() -> None:
    with op.batch_alter_table('backup_history') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('started_at', engine.db.models.UTCDateTime(), nullable=True))
        batch.create_index('ix_backup_history_kind', ['kind'])
    conn = op.get_bind()
    for bid, btype, scope in conn.execute(sa.text("SELECT id, backup_type, scope FROM backup_history")).fetchall():
        try:
            chosen = json.loads(scope) if isinstance(scope, str) else (scope or {})
        except ValueError:
            chosen = {}
        files = isinstance(chosen, dict) and any(chosen.get(k) for k in FILE_SCOPES)
        kind = btype if btype in ("incremental", "differential") or files else "database"
        conn.execute(sa.text("UPDATE backup_history SET kind = :k WHERE id = :i"), {"k": kind, "i": bid})


def downgrade() -> None:
    with op.batch_alter_table('backup_history') as batch:
        batch.drop_index('ix_backup_history_kind')
        batch.drop_column('started_at')
        batch.drop_column('kind')
