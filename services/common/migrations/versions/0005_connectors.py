"""CRM connectors: the inbox of accepted CRM changes not yet in the ledger, and each connector's positions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 02:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'connector_inbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('connector', sa.String(length=32), nullable=False),
        sa.Column('object_id', sa.String(length=128), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('payload', sa.Text(), nullable=True),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False, server_default='pending'),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
    )
    op.create_index('ix_connector_inbox_due', 'connector_inbox', ['connector', 'status', 'not_before'])
    op.create_table(
        'connector_state',
        sa.Column('connector', sa.String(length=32), primary_key=True),
        sa.Column('name', sa.String(length=64), primary_key=True),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('connector_state')
    op.drop_index('ix_connector_inbox_due', table_name='connector_inbox')
    op.drop_table('connector_inbox')
