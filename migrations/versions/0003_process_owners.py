"""process owners of runs and turns

Records which process (host, process id, start time) runs a training run and answers a turn,
so that a restarted process sees at once that the owner is gone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=160), nullable=True))
    with op.batch_alter_table('turns') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=160), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('turns') as batch:
        batch.drop_column('owner')
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_column('owner')
