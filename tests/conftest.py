"""Shared fixtures: the tiny reference model is built once per test session, on local disk."""

from __future__ import annotations

import os

import pytest
import torch

from secbot.model.engine import Engine
from secbot.model.tiny import build_tiny_model

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database: a SQLite file, and PostgreSQL when SECBOT_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'secbot.db'}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need SECBOT_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1/test)")
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def store(db_url):
    from secbot.feedback.store import Store

    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def intake(store):
    from secbot.feedback.intake import Intake

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
