"""process owners of runs and turns; Messages-tab greetings

Records which process (host, process id, start time) runs a training run and answers a turn,
so that a restarted process sees at once that the owner is gone; and which users secbot has
greeted in its Messages tab (once each).

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
    op.create_table('slack_greetings',
                    sa.Column('user_id', sa.String(length=32), nullable=False),
                    sa.Column('greeted_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('user_id'))


def downgrade() -> None:
    op.drop_table('slack_greetings')
    with op.batch_alter_table('turns') as batch:
        batch.drop_column('owner')
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_column('owner')
