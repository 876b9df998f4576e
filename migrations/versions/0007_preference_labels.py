"""labelled completions for the preference stage

Every 👍/👎 on a model answer, each correction's pair (its answer desirable, the corrected one
not) and imported trl preference examples are kept as labelled completions; a snapshot names the
labels its run's preference stage used.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'preference_labels',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('prompt', sa.Text(), nullable=False),
        sa.Column('completion', sa.Text(), nullable=False),
        sa.Column('history', sa.JSON(), nullable=False),
        sa.Column('desirable', sa.Boolean(), nullable=False),
        sa.Column('source', sa.String(length=10), nullable=False),
        sa.Column('author_id', sa.String(length=64), nullable=True),
        sa.Column('trusted', sa.Boolean(), nullable=False),
        sa.Column('turn_id', sa.Integer(), sa.ForeignKey('turns.id'), nullable=True),
        sa.Column('record_id', sa.Integer(), sa.ForeignKey('training_records.id'), nullable=True),
        sa.Column('model_version_id', sa.Integer(), sa.ForeignKey('model_versions.id'), nullable=True),
        sa.Column('reason', sa.String(length=9), nullable=True),
        sa.Column('excluded', sa.String(length=32), nullable=True),
        sa.Column('content_hash', sa.String(length=64), nullable=False, unique=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_preference_labels_turn', 'preference_labels', ['turn_id', 'author_id'])
    with op.batch_alter_table('dataset_snapshots') as batch:
        batch.add_column(sa.Column('label_ids', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('dataset_snapshots') as batch:
        batch.drop_column('label_ids')
    op.drop_index('ix_preference_labels_turn', table_name='preference_labels')
    op.drop_table('preference_labels')
