"""how often each record answered from team memory

Every record counts the answers it gave from team memory and when it last gave one, so admins
see the most used and (with the 👎 on those answers) the most disputed team answers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_records') as batch:
        batch.add_column(sa.Column('memory_hits', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('last_hit_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('training_records') as batch:
        batch.drop_column('last_hit_at')
        batch.drop_column('memory_hits')
