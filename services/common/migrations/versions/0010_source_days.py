"""console: events published per source and business day

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 22:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'source_days',
        sa.Column('source', sa.String(length=64), primary_key=True),
        sa.Column('day', sa.String(length=10), primary_key=True),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('last_accepted_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_event_id', sa.String(length=128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('source_days')
