"""Alembic environment: the feedback schema is the target; the scheduler's table is not ours."""

from alembic import context

from secbot.feedback.store.db import make_engine
from secbot.feedback.store.migrate import include_object
from secbot.feedback.store.schema import Base


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      include_object=include_object, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # the alembic command line
    engine = make_engine(config.get_main_option("sqlalchemy.url"), foreign_keys=False)
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()
