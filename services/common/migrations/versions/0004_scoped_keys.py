"""scoped keys: a key's scope (boards, one rep, one team), its expiry, its last use, and screen sessions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('scope_boards', sa.Text(), nullable=True))
        batch.add_column(sa.Column('scope_rep_id', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('scope_team_id', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('parent_key_id', sa.String(length=32), nullable=True))
        batch.create_index('ix_api_keys_parent_key_id', ['parent_key_id'])


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_index('ix_api_keys_parent_key_id')
        for column in ('parent_key_id', 'last_used_at', 'expires_at', 'scope_team_id', 'scope_rep_id', 'scope_boards'):
            batch.drop_column(column)
