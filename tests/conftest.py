"""Shared fixtures: the tiny reference model is built once per test session, on local disk."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
import torch

from secbot.model.runtime.engine import Engine
from secbot.model.runtime.tiny import build_tiny_model

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

pytest_plugins = ["slack_bot"]  # the Slack tests' fixtures: slack, bot_engine, bot


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def engine(tiny_dir) -> Engine:
    return Engine.load(tiny_dir, system_prompt="You are secbot.")


@pytest.fixture
def fresh_engine(tiny_dir) -> Engine:
    """An engine of its own, for tests that change adapters or weights."""
    return Engine.load(tiny_dir, system_prompt="You are secbot.")


POSTGRES_URL = os.environ.get("SECBOT_TEST_POSTGRES_URL")


@contextmanager
def postgres_database(server_url: str):
    """A database of its own on the server SECBOT_TEST_POSTGRES_URL names, created for one test and
    dropped after it; nothing that was there before is touched."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    name = f"secbot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        admin.dispose()
        pytest.skip(f"cannot create a test database on {make_url(server_url).render_as_string()}: "
                    f"{str(exc).splitlines()[0]}")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database: a SQLite file, and PostgreSQL when SECBOT_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'secbot.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need SECBOT_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1/test)")
    with postgres_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def store(db_url):
    from secbot.feedback.store.repositories import Store

    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def intake(store):
    from secbot.feedback.intake.submissions import Intake

    return Intake(store, trusted={"UTRUSTED"})


def answered(intake, *, channel="C", thread_ts="1.0", question="q", answer="a", asker="UASK",
             question_ts=None, answer_ts=None, **fields) -> int:
    """A question and its answer stored as the bot stores them; returns the turn id."""
    turn = intake.question(channel=channel, thread_ts=thread_ts, question=question, asker=asker,
                           question_ts=question_ts)
    intake.answer(turn, answer, answer_ts=answer_ts, **fields)
    if answer_ts:
        intake.store.conversations.add_answer_messages(turn, channel, [answer_ts])
    return turn
