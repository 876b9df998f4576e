"""The repository layer: every read and write of the feedback store goes through `Store`.

Text is redacted before it is stored. Each method is one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from secbot.feedback.db import make_engine, make_sessionmaker
from secbot.feedback.models import (DatasetSnapshot, FeedbackEvent, FeedbackKind, FeedbackSource, Lock,
                             ModelVersion, RecordSource, RecordStatus, RunState, SlackEvent,
                             SlackThread, TrainingRecord, TrainingRun, Turn, VersionStatus, utcnow)
from secbot.feedback.redaction import Redactor
from secbot.model.errors import ModelError
from secbot.model.records import Columns, Record, read_records, records_hash, write_records


class StoreError(ModelError):
    """A store operation that cannot be done as asked; the message says why."""


def normalise_prompt(text: str) -> str:
    """How prompts are compared against the held-out set: case and spacing do not matter."""
    return " ".join(text.split()).casefold()


SNAPSHOT_COLUMNS = (TrainingRecord.id, TrainingRecord.prompt, TrainingRecord.response,
                    TrainingRecord.history, TrainingRecord.author_id)


def as_record(row) -> Record:
    return Record(row.prompt, row.response, tuple((q, a) for q, a in row.history))


@dataclass(frozen=True)
class SnapshotResult:
    snapshot: DatasetSnapshot
    records: list[Record]


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int
    redactions: int


class Store:
    """Feedback store on any SQLAlchemy URL; `migrate=True` brings the schema up to date first."""

    def __init__(self, url: str, *, trusted_analysts: Iterable[str] = (),
                 redactor: Redactor | None = None, migrate: bool = True):
        if migrate:
            from secbot.feedback.migrate import upgrade

            upgrade(url)
        self.url = url
        self.engine = make_engine(url)
        self._sessions = make_sessionmaker(self.engine)
        self.redactor = redactor or Redactor()
        self.trusted = set(trusted_analysts)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- threads and turns -------------------------------------------------------------------
    def _thread(self, s: Session, channel: str, thread_ts: str) -> SlackThread:
        found = s.scalar(select(SlackThread).filter_by(channel_id=channel, thread_ts=thread_ts))
        if found:
            return found
        try:
            with s.begin_nested():
                thread = SlackThread(channel_id=channel, thread_ts=thread_ts)
                s.add(thread)
            return thread
        except IntegrityError:  # another process created it first
            return s.scalar(select(SlackThread).filter_by(channel_id=channel, thread_ts=thread_ts))

    def record_question(self, *, channel: str, thread_ts: str, question: str,
                        asker: str | None = None, question_ts: str | None = None,
                        history: Sequence[Sequence[str]] = ()) -> int:
        """Store a question as soon as it arrives (so it is kept even if answering fails)."""
        clean = self.redactor.redact(question)
        with self.session() as s:
            turn = Turn(thread=self._thread(s, channel, thread_ts), question=clean.text,
                        history=[list(t) for t in history], asker_id=asker,
                        question_ts=question_ts, redactions=clean.count)
            s.add(turn)
            s.flush()
            return turn.id

    def record_answer(self, turn_id: int, *, answer: str | None, answer_ts: str | None = None,
                      model_version_id: int | None = None, latency_ms: int | None = None,
                      prompt_tokens: int | None = None, completion_tokens: int | None = None,
                      error_id: str | None = None) -> None:
        clean = self.redactor.redact(answer or "")
        with self.session() as s:
            turn = s.get(Turn, turn_id)
            if turn is None:
                raise StoreError(f"no turn {turn_id}")
            turn.answer = clean.text if answer is not None else None
            turn.answer_ts, turn.model_version_id = answer_ts, model_version_id
            turn.latency_ms, turn.error_id = latency_ms, error_id
            turn.prompt_tokens, turn.completion_tokens = prompt_tokens, completion_tokens
            turn.redactions += clean.count

    def record_turn(self, *, channel: str, thread_ts: str, question: str, answer: str,
                    history: Sequence[Sequence[str]] = (), **fields) -> int:
        """A question and its answer at once; returns the turn id."""
        turn_id = self.record_question(channel=channel, thread_ts=thread_ts, question=question,
                                       asker=fields.pop("asker", None),
                                       question_ts=fields.pop("question_ts", None), history=history)
        self.record_answer(turn_id, answer=answer, **fields)
        return turn_id

    def get_turn(self, turn_id: int) -> Turn | None:
        with self.session() as s:
            return s.get(Turn, turn_id)

    def turn_for_message(self, channel: str, ts: str) -> Turn | None:
        """The turn whose answer (or question) is the Slack message `ts` in `channel`."""
        with self.session() as s:
            query = select(Turn).join(SlackThread).where(SlackThread.channel_id == channel)
            return (s.scalar(query.where(Turn.answer_ts == ts).order_by(Turn.id.desc()))
                    or s.scalar(query.where(Turn.question_ts == ts).order_by(Turn.id.desc())))

    def thread_history(self, channel: str, thread_ts: str,
                       before_turn: int | None = None) -> list[tuple[str, str]]:
        """The thread's answered turns, oldest first, as `[q, a]` history."""
        with self.session() as s:
            query = (select(Turn.question, Turn.answer).join(SlackThread)
                     .where(SlackThread.channel_id == channel, SlackThread.thread_ts == thread_ts,
                            Turn.answer.is_not(None), Turn.error_id.is_(None)).order_by(Turn.id))
            if before_turn is not None:
                query = query.where(Turn.id < before_turn)
            return [(q, a) for q, a in s.execute(query)]

    def thread_known(self, channel: str, thread_ts: str) -> bool:
        with self.session() as s:
            return s.scalar(select(SlackThread.id).filter_by(channel_id=channel,
                                                             thread_ts=thread_ts)) is not None

    # -- feedback ------------------------------------------------------------------------------
    def record_feedback(self, turn_id: int, user: str, kind: FeedbackKind | str,
                        source: FeedbackSource | str) -> bool:
        """Store one feedback event; the same user, turn and kind is kept once. True if new."""
        kind, source = FeedbackKind(kind), FeedbackSource(source)
        with self.session() as s:
            if s.get(Turn, turn_id) is None:
                raise StoreError(f"no turn {turn_id}")
            try:
                with s.begin_nested():
                    s.add(FeedbackEvent(turn_id=turn_id, user_id=user, kind=kind, source=source))
                return True
            except IntegrityError:
                return False

    def feedback_counts(self, turn_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(FeedbackEvent.kind, func.count()).where(
                FeedbackEvent.turn_id == turn_id).group_by(FeedbackEvent.kind))
            return {kind.value: n for kind, n in rows}

    # -- training records ----------------------------------------------------------------------
    def _status_for(self, author: str | None) -> tuple[RecordStatus, str | None, datetime | None]:
        if author in self.trusted:
            return RecordStatus.APPROVED, "auto:trusted", utcnow()
        return RecordStatus.PENDING, None, None

    def _clean(self, record: Record) -> tuple[Record, int]:
        """The record with every field redacted, and how many secrets were replaced."""
        redactions = 0

        def clean(text: str) -> str:
            nonlocal redactions
            result = self.redactor.redact(text)
            redactions += result.count
            return result.text

        return Record(clean(record.prompt), clean(record.response),
                      tuple((clean(q), clean(a)) for q, a in record.history)), redactions

    @staticmethod
    def _row(record: Record, redactions: int, **fields) -> TrainingRecord:
        return TrainingRecord(prompt=record.prompt, response=record.response,
                              history=[list(t) for t in record.history], redactions=redactions,
                              content_hash=records_hash([record]), **fields)

    def _add_record(self, s: Session, record: Record, **fields) -> tuple[TrainingRecord, bool]:
        """Redact and insert, or return the existing record with the same content."""
        record, redactions = self._clean(record)
        row = self._row(record, redactions, **fields)
        existing = s.scalar(select(TrainingRecord).filter_by(content_hash=row.content_hash))
        if existing is not None:
            return existing, False
        s.add(row)
        s.flush()
        return row, True

    def _turn_and_history(self, turn_id: int) -> tuple[Turn, list[tuple[str, str]]]:
        """The turn and its thread's earlier answered turns, which become the record's history."""
        with self.session() as s:
            turn = s.get(Turn, turn_id)
            if turn is None:
                raise StoreError(f"no turn {turn_id}")
            thread = s.get(SlackThread, turn.thread_id)
        return turn, self.thread_history(thread.channel_id, thread.thread_ts, before_turn=turn_id)

    def add_correction(self, turn_id: int, author: str, response: str) -> TrainingRecord:
        """An analyst's corrected answer to a turn becomes a record: the turn's question as
        prompt, the thread's earlier turns as history. Trusted analysts' are approved at once."""
        if not response.strip():
            raise StoreError("a correction needs an answer")
        turn, history = self._turn_and_history(turn_id)
        return self._add_from_turn(turn, response, history, RecordSource.CORRECTION, author)

    def add_approved_answer(self, turn_id: int, user: str) -> TrainingRecord | None:
        """A 👍'd answer as a record (pending unless the user is trusted); None if unanswered."""
        turn, history = self._turn_and_history(turn_id)
        if not turn.answer or turn.error_id:
            return None
        return self._add_from_turn(turn, turn.answer, history, RecordSource.APPROVED_ANSWER, user)

    def _add_from_turn(self, turn: Turn, response: str, history, source: RecordSource,
                       author: str) -> TrainingRecord:
        status, reviewer, reviewed_at = self._status_for(author)
        with self.session() as s:
            row, _ = self._add_record(
                s, Record(turn.question, response, tuple(history)), source=source, status=status,
                author_id=author, reviewer_id=reviewer, reviewed_at=reviewed_at, turn_id=turn.id,
                model_version_id=turn.model_version_id)
            return row

    def review(self, record_id: int, reviewer: str, approve: bool) -> TrainingRecord:
        with self.session() as s:
            row = s.get(TrainingRecord, record_id)
            if row is None:
                raise StoreError(f"no training record {record_id}")
            row.status = RecordStatus.APPROVED if approve else RecordStatus.REJECTED
            row.reviewer_id, row.reviewed_at = reviewer, utcnow()
            return row

    def get_record(self, record_id: int) -> TrainingRecord | None:
        with self.session() as s:
            return s.get(TrainingRecord, record_id)

    def records(self, status: RecordStatus | str | None = None, limit: int | None = None) -> list[TrainingRecord]:
        with self.session() as s:
            query = select(TrainingRecord).order_by(TrainingRecord.id)
            if status is not None:
                query = query.where(TrainingRecord.status == RecordStatus(status))
            return list(s.scalars(query.limit(limit)))

    def counts_by_status(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(TrainingRecord.status, func.count()).group_by(TrainingRecord.status))
            counts = {status.value: 0 for status in RecordStatus}
            counts.update({status.value: n for status, n in rows})
            return counts

    # -- snapshots -----------------------------------------------------------------------------
    def freeze_snapshot(self, heldout_prompts: Iterable[str] = (),
                        max_author_share: float = 1.0) -> SnapshotResult:
        """Freeze the approved records into an immutable snapshot.

        Records whose prompt is in the held-out set are left out (the model must never train on
        its exam), and so are an author's records beyond `max_author_share` of the eligible
        ones (newest kept), so no single account can dominate what the model learns.
        """
        heldout = {normalise_prompt(p) for p in heldout_prompts}
        with self.session() as s:
            rows = list(s.execute(select(*SNAPSHOT_COLUMNS).where(
                TrainingRecord.status == RecordStatus.APPROVED).order_by(TrainingRecord.id)))
            eligible = [r for r in rows if normalise_prompt(r.prompt) not in heldout]
            excluded = {"heldout": len(rows) - len(eligible), "author_cap": 0}
            if max_author_share < 1.0 and eligible:
                cap = max(1, int(max_author_share * len(eligible)))
                kept_per_author: Counter = Counter()
                kept = []
                for row in reversed(eligible):  # newest first
                    key = row.author_id or "unknown"
                    if kept_per_author[key] < cap:
                        kept_per_author[key] += 1
                        kept.append(row)
                excluded["author_cap"] = len(eligible) - len(kept)
                eligible = sorted(kept, key=lambda r: r.id)
            records = [as_record(r) for r in eligible]
            snapshot = DatasetSnapshot(record_ids=[r.id for r in eligible],
                                       content_hash=records_hash(records), excluded=excluded)
            s.add(snapshot)
            s.flush()
            return SnapshotResult(snapshot, records)

    def snapshot_records(self, snapshot_id: int) -> list[Record]:
        with self.session() as s:
            snapshot = s.get(DatasetSnapshot, snapshot_id)
            if snapshot is None:
                raise StoreError(f"no snapshot {snapshot_id}")
            wanted = set(snapshot.record_ids)
            # One scan beats an IN list of 100k ids (and SQLite's limit on bound parameters).
            rows = {r.id: r for r in s.execute(select(*SNAPSHOT_COLUMNS)) if r.id in wanted}
            missing = wanted - rows.keys()
            if missing:  # records of a snapshot are never deleted; say so if one was
                raise StoreError(f"snapshot {snapshot_id} refers to missing records {sorted(missing)[:5]}")
            return [as_record(rows[i]) for i in snapshot.record_ids]

    # -- export and import ---------------------------------------------------------------------
    def export_records(self, path: str | Path, status: RecordStatus | str | None = RecordStatus.APPROVED) -> int:
        """THUDM JSON lines (prompt, response, history), oldest first; returns the count."""
        return write_records(path, [as_record(r) for r in self.records(status)])

    def import_records(self, path: str | Path, *, status: RecordStatus | str = RecordStatus.APPROVED,
                       author: str = "import", columns: Columns = Columns()) -> ImportResult:
        """All records of a file in one transaction; a malformed line imports nothing."""
        records = read_records(path, columns).records  # raises RecordError naming the line
        status = RecordStatus(status)
        approved = status is RecordStatus.APPROVED
        fields = dict(source=RecordSource.IMPORT, status=status, author_id=author,
                      reviewer_id=author if approved else None, reviewed_at=utcnow() if approved else None)
        added = duplicates = redactions = 0
        with self.session() as s:
            for start in range(0, len(records), 1000):
                rows = {}
                for record in records[start:start + 1000]:
                    row = self._row(*self._clean(record), **fields)
                    rows.setdefault(row.content_hash, row)
                existing = set(s.scalars(select(TrainingRecord.content_hash).where(
                    TrainingRecord.content_hash.in_(list(rows)))))
                new = [row for digest, row in rows.items() if digest not in existing]
                s.add_all(new)
                s.flush()
                added += len(new)
                duplicates += min(1000, len(records) - start) - len(new)
                redactions += sum(row.redactions for row in new)
        return ImportResult(added, duplicates, redactions)

    # -- Slack event dedupe ------------------------------------------------------------------
    def claim_event(self, event_id: str) -> bool:
        """True the first time an event id is seen, across processes and restarts."""
        with self.session() as s:
            try:
                with s.begin_nested():
                    s.add(SlackEvent(event_id=event_id))
                return True
            except IntegrityError:
                return False

    def prune_events(self, older_than: timedelta = timedelta(days=2)) -> int:
        with self.session() as s:
            return s.execute(delete(SlackEvent).where(
                SlackEvent.received_at < utcnow() - older_than)).rowcount

    # -- model versions ------------------------------------------------------------------------
    def add_version(self, *, base_model: str, adapter_path: str | None, run_id: int | None = None,
                    metrics: dict | None = None,
                    status: VersionStatus = VersionStatus.CANDIDATE) -> ModelVersion:
        with self.session() as s:
            version = ModelVersion(base_model=base_model, adapter_path=adapter_path, run_id=run_id,
                                   metrics=metrics or {}, status=status)
            s.add(version)
            s.flush()
            return version

    def active_version(self) -> ModelVersion | None:
        with self.session() as s:
            return s.scalar(select(ModelVersion).filter_by(status=VersionStatus.ACTIVE))

    def versions(self) -> list[ModelVersion]:
        with self.session() as s:
            return list(s.scalars(select(ModelVersion).order_by(ModelVersion.id)))

    def get_version(self, version_id: int) -> ModelVersion | None:
        with self.session() as s:
            return s.get(ModelVersion, version_id)

    def promote(self, version_id: int, by: str) -> ModelVersion:
        """Make `version_id` the active version, retiring the current one, in one transaction."""
        with self.session() as s:
            version = s.get(ModelVersion, version_id)
            if version is None:
                raise StoreError(f"no model version {version_id}")
            current = s.scalar(select(ModelVersion).filter_by(status=VersionStatus.ACTIVE))
            if current is not None and current.id != version_id:
                current.status = VersionStatus.RETIRED
                s.flush()  # the database allows one active version; retire first
            version.status = VersionStatus.ACTIVE
            version.promoted_at, version.promoted_by = utcnow(), by
            return version


    def retire_active(self) -> None:
        """Leave no version active: the bare base model serves."""
        with self.session() as s:
            current = s.scalar(select(ModelVersion).filter_by(status=VersionStatus.ACTIVE))
            if current is not None:
                current.status = VersionStatus.RETIRED

    # -- training runs -------------------------------------------------------------------------
    def create_run(self, *, snapshot_id: int | None, method: str, hyperparameters: dict,
                   requested_by: str | None, log_path: str | None = None) -> TrainingRun:
        with self.session() as s:
            run = TrainingRun(state=RunState.RUNNING, snapshot_id=snapshot_id, method=method,
                              hyperparameters=hyperparameters, requested_by=requested_by,
                              log_path=log_path, started_at=utcnow(), heartbeat_at=utcnow())
            s.add(run)
            s.flush()
            return run

    def enqueue_run(self, *, method: str, requested_by: str | None) -> TrainingRun | None:
        """Queue a run for the training worker; None when one is already queued or running."""
        with self.session() as s:
            busy = s.scalar(select(TrainingRun).where(TrainingRun.state.in_([RunState.QUEUED, RunState.RUNNING])))
            if busy is not None:
                return None
            run = TrainingRun(state=RunState.QUEUED, method=method, hyperparameters={},
                              requested_by=requested_by)
            s.add(run)
            s.flush()
            return run

    def next_queued_run(self) -> TrainingRun | None:
        with self.session() as s:
            return s.scalar(select(TrainingRun).where(TrainingRun.state == RunState.QUEUED)
                            .order_by(TrainingRun.id))

    def update_run(self, run_id: int, **fields) -> TrainingRun:
        with self.session() as s:
            run = s.get(TrainingRun, run_id)
            if run is None:
                raise StoreError(f"no training run {run_id}")
            for key, value in fields.items():
                setattr(run, key, value)
            if fields.get("state") in (RunState.FAILED, RunState.REJECTED, RunState.PROMOTED,
                                       RunState.SUCCEEDED):
                run.finished_at = utcnow()
            return run

    def get_run(self, run_id: int) -> TrainingRun | None:
        with self.session() as s:
            return s.get(TrainingRun, run_id)

    def runs(self, limit: int = 20) -> list[TrainingRun]:
        with self.session() as s:
            return list(s.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))

    def fail_stale_runs(self, older_than: timedelta) -> list[int]:
        """Runs still marked running whose heartbeat stopped: their process died."""
        with self.session() as s:
            stale = list(s.scalars(select(TrainingRun).where(
                TrainingRun.state == RunState.RUNNING, TrainingRun.heartbeat_at < utcnow() - older_than)))
            for run in stale:
                run.state, run.finished_at = RunState.FAILED, utcnow()
                run.error = (f"no heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC: the process "
                             "running it stopped (crash, restart or kill)")
            return [run.id for run in stale]

    def last_snapshot_ids(self) -> set[int]:
        """Record ids the active version was trained on (empty when none was trained)."""
        with self.session() as s:
            active = s.scalar(select(ModelVersion).filter_by(status=VersionStatus.ACTIVE))
            run = s.get(TrainingRun, active.run_id) if active and active.run_id else None
            snapshot = s.get(DatasetSnapshot, run.snapshot_id) if run and run.snapshot_id else None
            return set(snapshot.record_ids) if snapshot else set()

    # -- locks ---------------------------------------------------------------------------------
    def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> bool:
        """Take the named lease unless another owner holds an unexpired one."""
        now = utcnow()
        with self.session() as s:
            lock = s.get(Lock, name, with_for_update=True)
            if lock is None:
                try:
                    with s.begin_nested():
                        s.add(Lock(name=name, owner=owner, expires_at=now + ttl))
                    return True
                except IntegrityError:
                    return False
            if lock.owner != owner and lock.expires_at > now:
                return False
            lock.owner, lock.expires_at = owner, now + ttl
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self.session() as s:
            s.execute(delete(Lock).where(Lock.name == name, Lock.owner == owner))

    def lock_owner(self, name: str) -> str | None:
        with self.session() as s:
            lock = s.get(Lock, name)
            return lock.owner if lock and lock.expires_at > utcnow() else None
