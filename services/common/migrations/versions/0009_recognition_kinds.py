"""achievements: a recorded notification is a tier crossing, an achievement or a streak milestone

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 20:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tier_crossings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='tier'))
        batch_op.drop_constraint('uq_tier_crossings_key', type_='unique')
        batch_op.create_unique_constraint(
            'uq_tier_crossings_key', ['rep_id', 'kind', 'plan_id', 'period_key', 'tier_id']
        )


def downgrade() -> None:
    with op.batch_alter_table('tier_crossings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_tier_crossings_key', type_='unique')
        batch_op.execute("DELETE FROM tier_crossings WHERE kind <> 'tier'")
        batch_op.create_unique_constraint('uq_tier_crossings_key', ['rep_id', 'plan_id', 'period_key', 'tier_id'])
        batch_op.drop_column('kind')
