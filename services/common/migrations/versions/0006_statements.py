"""period close and commission statements

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 02:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'period_closes',
        sa.Column('plan_id', sa.String(length=128), primary_key=True),
        sa.Column('period_key', sa.String(length=16), primary_key=True),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('as_of_seq', sa.BigInteger(), nullable=False),
        sa.Column('forced', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('closed_by', sa.String(length=32), nullable=False),
        sa.Column('plan_rules', sa.Text(), nullable=True),
    )
    op.create_table(
        'statements',
        sa.Column('statement_id', sa.String(length=400), primary_key=True),
        sa.Column('plan_id', sa.String(length=128), nullable=False),
        sa.Column('period_key', sa.String(length=16), nullable=False),
        sa.Column('rep_id', sa.String(length=128), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
    )
    op.create_index('ix_statements_rep', 'statements', ['rep_id', 'plan_id'])


def downgrade() -> None:
    op.drop_index('ix_statements_rep', table_name='statements')
    op.drop_table('statements')
    op.drop_table('period_closes')
