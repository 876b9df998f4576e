"""Schema migrations through Alembic, callable from code (start-up) and `secbot db`."""

from __future__ import annotations

from pathlib import Path

import secbot.migrations as migrations

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)
NOT_OURS = {"apscheduler_jobs"}  # the scheduler creates and owns its job table


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Keep tables that are not ours out of autogenerate."""
    return not (type_ == "table" and name in NOT_OURS)


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (creating it if it is empty)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from secbot.feedback.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return rev
