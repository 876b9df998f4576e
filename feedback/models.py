"""The schema: threads, turns, feedback, training records, snapshots, runs and model versions."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("store timezone-aware datetimes")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


def str_enum(cls: type[enum.Enum]) -> Enum:
    """Enums stored as their values in a plain string column (portable, readable)."""
    return Enum(cls, native_enum=False, values_callable=lambda e: [m.value for m in e],
                length=max(len(m.value) for m in cls), validate_strings=True)


class FeedbackKind(str, enum.Enum):
    THUMBS_UP = "thumbs_up"
    THUMBS_DOWN = "thumbs_down"
    CORRECTION_REQUESTED = "correction_requested"


class FeedbackSource(str, enum.Enum):
    REACTION = "reaction"
    BUTTON = "button"
    SHORTCUT = "shortcut"


class RecordSource(str, enum.Enum):
    CORRECTION = "correction"
    APPROVED_ANSWER = "approved_answer"
    IMPORT = "import"


class RecordStatus(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    PROMOTED = "promoted"


class VersionStatus(str, enum.Enum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class SlackThread(Base):
    __tablename__ = "slack_threads"
    __table_args__ = (UniqueConstraint("channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    turns: Mapped[list[Turn]] = relationship(back_populates="thread", order_by="Turn.id")


class Turn(Base):
    """One question and the answer the bot gave, with what produced it."""

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_answer_ts", "answer_ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("slack_threads.id"), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    history: Mapped[list] = mapped_column(JSON, default=list)
    asker_id: Mapped[str | None] = mapped_column(String(32))
    question_ts: Mapped[str | None] = mapped_column(String(32))
    answer_ts: Mapped[str | None] = mapped_column(String(32))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    error_id: Mapped[str | None] = mapped_column(String(32))
    redactions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    thread: Mapped[SlackThread] = relationship(back_populates="turns")


class FeedbackEvent(Base):
    __tablename__ = "feedback_events"
    __table_args__ = (UniqueConstraint("turn_id", "user_id", "kind", name="uq_feedback_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[FeedbackKind] = mapped_column(str_enum(FeedbackKind))
    source: Mapped[FeedbackSource] = mapped_column(str_enum(FeedbackSource))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrainingRecord(Base):
    """A `{prompt, response, history}` example with its provenance and review state."""

    __tablename__ = "training_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    history: Mapped[list] = mapped_column(JSON, default=list)
    source: Mapped[RecordSource] = mapped_column(str_enum(RecordSource))
    status: Mapped[RecordStatus] = mapped_column(str_enum(RecordStatus), index=True)
    author_id: Mapped[str | None] = mapped_column(String(64))
    reviewer_id: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    redactions: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DatasetSnapshot(Base):
    """An immutable, ordered list of approved record ids, frozen for one training run."""

    __tablename__ = "dataset_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_ids: Mapped[list] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    excluded: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[RunState] = mapped_column(str_enum(RunState), index=True)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_snapshots.id"))
    method: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    adapter_path: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ModelVersion(Base):
    """A servable model: base plus (optionally) an adapter. At most one is active."""

    __tablename__ = "model_versions"
    __table_args__ = (
        Index("uq_one_active_model_version", "status", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    adapter_path: Mapped[str | None] = mapped_column(Text)
    base_model: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    status: Mapped[VersionStatus] = mapped_column(str_enum(VersionStatus))
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    promoted_by: Mapped[str | None] = mapped_column(String(64))


class SlackEvent(Base):
    """Event ids already handled, so Slack's retries are answered once, across restarts too."""

    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Lock(Base):
    """Named leases shared by every process on the database (one retraining at a time)."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
