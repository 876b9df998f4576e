"""Database engine and sessions: SQLite (WAL, foreign keys, busy timeout) or any SQLAlchemy URL.

`Database.session()` is a write transaction; `Database.reading()` a read-only one. On SQLite a
write transaction takes the write lock up front (`BEGIN IMMEDIATE`), so it waits its turn
instead of failing with "database is locked"; a read transaction never takes it, so lookups
(the team memory, a thread's history) do not queue behind writers in WAL mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from secbot.model.errors import ModelError

BUSY_TIMEOUT_MS = 30_000


class DatabaseError(ModelError):
    """The database URL is wrong or the database cannot be reached; the message says which."""


def _sqlite_engine(url, begin: str, foreign_keys: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                              "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql(begin)

    return engine


def make_engine(url: str, *, readonly: bool = False, foreign_keys: bool = True) -> Engine:
    """An engine for `url`; SQLite files get their directory, WAL and immediate write locks.
    Migrations run without foreign keys on SQLite, where Alembic rebuilds a table to alter it."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DatabaseError(f"SECBOT_DATABASE_URL {mask_password(url)!r} is not a usable "
                            f"database URL ({exc}). Use e.g. sqlite:////var/lib/secbot/secbot.db "
                            "or postgresql://user@host/db (install secbot[postgres]).") from None
    except ImportError as exc:
        raise DatabaseError(f"the driver for {parsed.get_backend_name()} is not installed ({exc}); "
                            "install secbot[postgres] for PostgreSQL.") from None
    if parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {folder} ({exc.strerror}); "
                                "set SECBOT_DATA_DIR or SECBOT_DATABASE_URL to a writable place.") from None
    return _sqlite_engine(url, "BEGIN" if readonly else "BEGIN IMMEDIATE", foreign_keys)


def mask_password(url: str) -> str:
    """postgresql://user:pw@host/db -> postgresql://user:***@host/db (SQLAlchemy's own rendering);
    text that is not a URL is shown only when it cannot hold a password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url if "@" not in url else "(a database URL that cannot be parsed)"


class Database:
    """Engines and sessions for one URL, shared by the repositories."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.backend = self.engine.dialect.name
        self._read_engine = make_engine(url, readonly=True) if self.backend == "sqlite" else self.engine
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    def check(self) -> None:
        """Raise DatabaseError naming the URL when the database does not answer."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseError(f"cannot reach the database {mask_password(self.url)}: {reason}. "
                                "Check SECBOT_DATABASE_URL and that the server runs.") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction, committed on success."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction."""
        with self._reads() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()
