"""scoring checkpoint: table values and the ledger sequence they reflect

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 06:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'scoring_checkpoint',
        sa.Column('table_name', sa.String(length=32), primary_key=True),
        sa.Column('key', sa.String(length=256), primary_key=True),
        sa.Column('partition', sa.Integer(), nullable=False),
        sa.Column('value', sa.LargeBinary(), nullable=False),
    )
    op.create_index('ix_scoring_checkpoint_partition', 'scoring_checkpoint', ['table_name', 'partition'])
    op.create_table(
        'scoring_checkpoint_mark',
        sa.Column('name', sa.String(length=32), primary_key=True),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('partitions', sa.Integer(), nullable=False),
        sa.Column('offsets', sa.Text(), nullable=True),
        sa.Column('taken_ms', sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('scoring_checkpoint_mark')
    op.drop_index('ix_scoring_checkpoint_partition', table_name='scoring_checkpoint')
    op.drop_table('scoring_checkpoint')
