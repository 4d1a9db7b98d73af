"""scoring presence: the partitions each live scoring worker serves (for the gateway's readiness)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 23:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scoring_presence',
    sa.Column('worker_id', sa.String(length=128), nullable=False),
    sa.Column('partitions', sa.Text(), nullable=False),
    sa.Column('seen_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('worker_id')
    )


def downgrade() -> None:
    op.drop_table('scoring_presence')
