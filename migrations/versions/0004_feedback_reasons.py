"""why an answer was wrong, why a record was rejected; revoked workspaces

A 👎 keeps what the analyst said was wrong (a reason and their own words); a rejected record
keeps why the reviewer rejected it; workspaces that revoked secbot's bot token or uninstalled
it are recorded, and nothing is posted there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

REASONS = ('wrong', 'outdated', 'unsafe', 'too_vague', 'other')


def upgrade() -> None:
    with op.batch_alter_table('feedback_events') as batch:
        batch.add_column(sa.Column('reason', sa.Enum(*REASONS, name='downreason', native_enum=False),
                                   nullable=True))
        batch.add_column(sa.Column('note', sa.Text(), nullable=True))
    with op.batch_alter_table('training_records') as batch:
        batch.add_column(sa.Column('review_note', sa.Text(), nullable=True))
    op.create_table('slack_revocations',
                    sa.Column('team_id', sa.String(length=32), nullable=False),
                    sa.Column('reason', sa.String(length=32), nullable=False),
                    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('team_id'))


def downgrade() -> None:
    op.drop_table('slack_revocations')
    with op.batch_alter_table('training_records') as batch:
        batch.drop_column('review_note')
    with op.batch_alter_table('feedback_events') as batch:
        batch.drop_column('note')
        batch.drop_column('reason')
