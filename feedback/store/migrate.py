"""Schema migrations through Alembic, callable from code (start-up) and `secbot db`."""

from __future__ import annotations

from pathlib import Path

import secbot.migrations as migrations
from secbot.feedback.store.db import Database, make_engine

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)
NOT_OURS = {"apscheduler_jobs"}  # the scheduler creates and owns its job table


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Keep tables that are not ours out of autogenerate."""
    return not (type_ == "table" and name in NOT_OURS)


def alembic_config(url: str, connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(db: Database | str, revision: str = "head") -> None:
    """Bring the database to `revision` (creating the schema if it is empty), in one transaction."""
    from alembic import command

    url = db.url if isinstance(db, Database) else db
    # SQLite alters a table by rebuilding it, which foreign keys would refuse while rows refer to it.
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(url, conn), revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url, readonly=True)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
