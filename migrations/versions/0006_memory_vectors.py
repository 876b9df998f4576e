"""question vectors for team memory's semantic matching

Each record in team memory keeps its question's vector, tagged with the embedding model's name
and dimension (vectors of different models are never compared), and the memory counts its
changes so every process knows when to reload its in-process matrix.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'memory_vectors',
        sa.Column('record_id', sa.Integer(), sa.ForeignKey('memory_docs.record_id'), primary_key=True),
        sa.Column('model', sa.String(length=160), nullable=False),
        sa.Column('dim', sa.Integer(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
    )
    op.create_index('ix_memory_vectors_model', 'memory_vectors', ['model'])
    with op.batch_alter_table('memory_stats') as batch:
        batch.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('memory_stats') as batch:
        batch.drop_column('version')
    op.drop_index('ix_memory_vectors_model', table_name='memory_vectors')
    op.drop_table('memory_vectors')
