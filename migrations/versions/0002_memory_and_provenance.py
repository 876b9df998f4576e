"""team memory, answer pieces, record flags, run reports

Adds the team memory's inverted index (memory_docs, memory_postings, memory_terms, memory_stats;
filled from the approved
records by the store at start-up), every message of a split answer (answer_messages), which
record answered a turn from memory, record flags and superseding, and run reports. Drops state
that is derivable: a turn's history (its thread's earlier turns), a version's metrics (its
run's) and a run's adapter path (its version's; runs rejected before this revision get a
candidate version that keeps the path).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

RECORD_STATUS = ('pending', 'approved', 'rejected', 'superseded', 'revoked')
RUN_STATE = ('queued', 'running', 'failed', 'rejected', 'promoted')


def upgrade() -> None:
    conn = op.get_bind()
    # Keep the adapter of every finished run that has no version yet as a candidate version.
    base = conn.execute(sa.text("SELECT base_model FROM model_versions LIMIT 1")).scalar() or "unknown"
    conn.execute(sa.text(
        "INSERT INTO model_versions (adapter_path, base_model, run_id, status, metrics, created_at) "
        "SELECT r.adapter_path, :base, r.id, 'candidate', '{}', r.created_at FROM training_runs r "
        "WHERE r.adapter_path IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM model_versions v WHERE v.run_id = r.id)"), {"base": base})
    conn.execute(sa.text("UPDATE training_runs SET state = 'rejected' WHERE state = 'succeeded'"))

    op.create_table('memory_docs',
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('question_key', sa.String(length=64), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('intent', sa.String(length=16), nullable=True),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['training_records.id'], ),
    sa.PrimaryKeyConstraint('record_id')
    )
    with op.batch_alter_table('memory_docs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memory_docs_question_key'), ['question_key'], unique=False)

    op.create_table('memory_postings',
    sa.Column('term', sa.String(length=64), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('tf', sa.Integer(), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['memory_docs.record_id'], ),
    sa.PrimaryKeyConstraint('term', 'record_id'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('memory_postings', schema=None) as batch_op:
        batch_op.create_index('ix_memory_postings_record', ['record_id'], unique=False)

    op.create_table('memory_terms',
    sa.Column('term', sa.String(length=64), nullable=False),
    sa.Column('df', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('term')
    )
    op.create_table('memory_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('docs', sa.Integer(), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('answer_messages',
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('ts', sa.String(length=32), nullable=False),
    sa.Column('turn_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['turn_id'], ['turns.id'], ),
    sa.PrimaryKeyConstraint('channel_id', 'ts')
    )
    with op.batch_alter_table('answer_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_answer_messages_turn_id'), ['turn_id'], unique=False)
    conn.execute(sa.text(
        "INSERT INTO answer_messages (channel_id, ts, turn_id) SELECT t.channel_id, u.answer_ts, u.id "
        "FROM turns u JOIN slack_threads t ON t.id = u.thread_id WHERE u.answer_ts IS NOT NULL"))

    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('memory_record_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_turns_memory_record_id', 'training_records',
                                    ['memory_record_id'], ['id'])
        batch_op.drop_column('history')

    with op.batch_alter_table('training_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flags', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('superseded_by', sa.Integer(), nullable=True))
        batch_op.alter_column('status', existing_type=sa.String(length=8),
                              type_=sa.Enum(*RECORD_STATUS, name='recordstatus', native_enum=False),
                              existing_nullable=False)
    with op.batch_alter_table('training_records', schema=None) as batch_op:
        batch_op.alter_column('flags', server_default=None)

    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('reported_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_column('adapter_path')
        batch_op.alter_column('state', existing_type=sa.String(length=9),
                              type_=sa.Enum(*RUN_STATE, name='runstate', native_enum=False),
                              existing_nullable=False)
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.alter_column('report', server_default=None)
    # Finished runs before this revision were reported when they ended.
    conn.execute(sa.text("UPDATE training_runs SET reported_at = finished_at WHERE finished_at IS NOT NULL"))

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('metrics')

    with op.batch_alter_table('slack_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slack_events_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('slack_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slack_events_received_at'))
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('metrics', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('adapter_path', sa.Text(), nullable=True))
        batch_op.drop_column('reported_at')
        batch_op.drop_column('report')
    with op.batch_alter_table('training_records', schema=None) as batch_op:
        batch_op.drop_column('superseded_by')
        batch_op.drop_column('flags')
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('history', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.drop_constraint('fk_turns_memory_record_id', type_='foreignkey')
        batch_op.drop_column('memory_record_id')
    op.drop_table('answer_messages')
    op.drop_table('memory_stats')
    op.drop_table('memory_terms')
    op.drop_table('memory_postings')
    op.drop_table('memory_docs')
