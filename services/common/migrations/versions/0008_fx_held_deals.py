"""currencies: the won deals whose credit waits for an FX rate

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 17:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'fx_held_deals',
        sa.Column('deal_id', sa.String(length=128), primary_key=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('amount', sa.String(length=40), nullable=False),
        sa.Column('closed_on', sa.String(length=10), nullable=False),
        sa.Column('rep_ids', sa.Text(), nullable=False),
        sa.Column('event_id', sa.String(length=128), nullable=False),
        sa.Column('held_since', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_fx_held_deals_currency', 'fx_held_deals', ['currency', 'closed_on'])


def downgrade() -> None:
    op.drop_index('ix_fx_held_deals_currency', table_name='fx_held_deals')
    op.drop_table('fx_held_deals')
