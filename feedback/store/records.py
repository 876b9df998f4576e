"""Training records, their review state, dataset snapshots and the team memory's index.

The memory changes in the same transaction as the record: a record is searchable the moment
its approval commits, and gone the moment it is rejected, revoked or superseded (a newer approved
record for the same question, or an approved correction of a memory answer, replaces it).
Identity-flagged records are never indexed: the configured identity answers those questions.
Which status a new record gets is decided by `feedback.intake.submissions`, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from secbot.feedback.errors import StoreError
from secbot.feedback.memory.matching import Document
from secbot.feedback.store.db import Database
from secbot.feedback.store.entities import (
    FeedbackKind,
    MemoryUsage,
    RecordFlag,
    RecordSource,
    RecordStatus,
    Snapshot,
    TrainingRecord,
)
from secbot.feedback.store.memory_index import TeamMemory
from secbot.feedback.store.schema import FeedbackRow, MemoryDocRow, RecordRow, SnapshotRow, TurnRow, utcnow
from secbot.model.training.record_formats import Record, records_hash


@dataclass(frozen=True)
class NewRecord:
    """A record about to be stored, with everything the store keeps about where it came from."""

    record: Record
    source: RecordSource
    status: RecordStatus
    author: str | None
    reviewer: str | None = None
    turn_id: int | None = None
    model_version_id: int | None = None
    flags: tuple[str, ...] = ()
    redactions: int = 0


def _entity(row: RecordRow) -> TrainingRecord:
    return TrainingRecord(id=row.id, prompt=row.prompt, response=row.response,
                          history=tuple((q, a) for q, a in row.history), source=row.source,
                          status=row.status, author=row.author_id, reviewer=row.reviewer_id,
                          reviewed_at=row.reviewed_at, turn_id=row.turn_id,
                          model_version_id=row.model_version_id, flags=tuple(row.flags or ()),
                          superseded_by=row.superseded_by, created_at=row.created_at,
                          review_note=row.review_note, memory_hits=row.memory_hits or 0,
                          last_hit_at=row.last_hit_at)


def _snapshot(row: SnapshotRow) -> Snapshot:
    return Snapshot(row.id, tuple(row.record_ids), row.content_hash, dict(row.excluded), row.created_at,
                    tuple(row.label_ids or ()))


class Records:
    def __init__(self, db: Database, memory: TeamMemory | None = None):
        self.db = db
        self.memory = memory or TeamMemory(db)

    # -- adding ----------------------------------------------------------------------------------
    def add(self, new: NewRecord) -> tuple[TrainingRecord, bool]:
        """Store `new`, or return the stored record with the same content; (record, created)."""
        with self.db.session() as s:
            digest = records_hash([new.record])
            existing = s.scalar(select(RecordRow).filter_by(content_hash=digest))
            if existing is not None:
                return _entity(existing), False
            row = self._insert(s, [new])[0]
            return _entity(row), True

    def add_many(self, items: Sequence[NewRecord], batch: int = 1000,
                 session: Session | None = None) -> tuple[int, int]:
        """Store many records in one transaction (imports; `session`: the caller's); (added, duplicates)."""
        if session is None:
            with self.db.session() as s:
                return self.add_many(items, batch, s)
        added = 0
        for start in range(0, len(items), batch):
            chunk: dict[str, NewRecord] = {}
            for new in items[start:start + batch]:
                chunk.setdefault(records_hash([new.record]), new)
            known = set(session.scalars(select(RecordRow.content_hash).where(
                RecordRow.content_hash.in_(list(chunk)))))
            fresh = [new for digest, new in chunk.items() if digest not in known]
            self._insert(session, fresh)
            added += len(fresh)
        return added, len(items) - added

    def _insert(self, s: Session, items: Sequence[NewRecord]) -> list[RecordRow]:
        rows = [RecordRow(prompt=n.record.prompt, response=n.record.response,
                          history=[list(t) for t in n.record.history], source=n.source, status=n.status,
                          author_id=n.author, reviewer_id=n.reviewer,
                          reviewed_at=utcnow() if n.reviewer else None, turn_id=n.turn_id,
                          model_version_id=n.model_version_id, flags=list(n.flags),
                          redactions=n.redactions, content_hash=records_hash([n.record]))
                for n in items]
        s.add_all(rows)
        s.flush()
        self._remember(s, [row for row in rows if row.status is RecordStatus.APPROVED])
        return rows

    # -- review ----------------------------------------------------------------------------------
    def review(self, record_id: int, reviewer: str, approve: bool, note: str | None = None) -> TrainingRecord:
        """Approve or reject a pending record; `note` says why (already redacted)."""
        with self.db.session() as s:
            row = self._row(s, record_id)
            if row.status is not RecordStatus.PENDING:
                raise StoreError(f"record #{record_id} is {row.status.value}, not pending review")
            row.status = RecordStatus.APPROVED if approve else RecordStatus.REJECTED
            row.reviewer_id, row.reviewed_at, row.review_note = reviewer, utcnow(), note or None
            if approve:  # a reviewer settled the dispute
                row.flags = [f for f in row.flags or () if f != RecordFlag.DISPUTED.value]
            s.flush()
            if approve:
                self._remember(s, [row])
            return _entity(row)

    def dispute(self, record_id: int) -> TrainingRecord | None:
        """An analyst says a team answer is wrong: an approved record goes back to review, flagged,
        and out of memory at once (until an admin approves it again). None when it was not approved."""
        with self.db.session() as s:
            row = self._row(s, record_id)
            if row.status is not RecordStatus.APPROVED:
                return None
            row.status, row.reviewer_id, row.reviewed_at = RecordStatus.PENDING, None, None
            row.flags = list(dict.fromkeys([*(row.flags or ()), RecordFlag.DISPUTED.value]))
            TeamMemory.remove(s, [row.id])
            return _entity(row)

    def revoke(self, record_id: int, reviewer: str) -> TrainingRecord:
        """Take an approved record back: out of memory now, out of every later snapshot."""
        with self.db.session() as s:
            row = self._row(s, record_id)
            if row.status is not RecordStatus.APPROVED:
                raise StoreError(f"record #{record_id} is {row.status.value}; only approved records "
                                 "can be revoked")
            row.status, row.reviewer_id, row.reviewed_at = RecordStatus.REVOKED, reviewer, utcnow()
            TeamMemory.remove(s, [row.id])
            return _entity(row)

    def resubmit_revoked(self, record_id: int, author: str) -> TrainingRecord:
        """Someone sent a revoked record's exact content again: it waits for review, flagged."""
        with self.db.session() as s:
            row = self._row(s, record_id)
            if row.status is not RecordStatus.REVOKED:
                raise StoreError(f"record #{record_id} is {row.status.value}, not revoked")
            row.status, row.reviewer_id, row.reviewed_at = RecordStatus.PENDING, None, None
            row.flags = list(dict.fromkeys([*(row.flags or ()), RecordFlag.REVOKED.value]))
            return _entity(row)

    def revoked_with_response(self, response: str) -> int | None:
        """A revoked record whose answer is exactly this text."""
        with self.db.reading() as s:
            return s.scalar(select(RecordRow.id).where(RecordRow.status == RecordStatus.REVOKED,
                                                       RecordRow.response == response).limit(1))

    @staticmethod
    def _row(s: Session, record_id: int) -> RecordRow:
        row = s.get(RecordRow, record_id, with_for_update=True)
        if row is None:
            raise StoreError(f"there is no training record #{record_id}")
        return row

    def _remember(self, s: Session, rows: Sequence[RecordRow]) -> None:
        """Index newly approved records, superseding what they replace: an approved record of the
        same question (the newest wins, within a batch too), and the memory answer a correction
        corrects."""
        rows = [r for r in rows if RecordFlag.IDENTITY not in (r.flags or ())]
        if not rows:
            return
        docs = [Document.of(r.id, r.prompt, [tuple(t) for t in r.history]) for r in rows]
        in_memory = TeamMemory.same_question(s, {d.question_key for d in docs})
        corrected = dict(s.execute(select(TurnRow.id, TurnRow.memory_record_id).where(
            TurnRow.id.in_([r.turn_id for r in rows if r.source is RecordSource.CORRECTION and r.turn_id]),
            TurnRow.memory_record_id.is_not(None))).all())
        replaced: dict[int, int] = {}  # old record id -> the record that replaces it
        newest: dict[str, int] = {}
        for row, doc in zip(rows, docs):
            for old in in_memory.get(doc.question_key, []) + ([newest[doc.question_key]]
                                                               if doc.question_key in newest else []):
                replaced[old] = row.id
            newest[doc.question_key] = row.id
            if row.turn_id in corrected and corrected[row.turn_id] != row.id:
                replaced[corrected[row.turn_id]] = row.id
        for old, new in replaced.items():
            s.execute(update(RecordRow).where(RecordRow.id == old, RecordRow.status == RecordStatus.APPROVED)
                      .values(status=RecordStatus.SUPERSEDED, superseded_by=new))
        TeamMemory.remove(s, [rid for rid in replaced if rid not in newest.values()])
        self.memory.add(s, [d for d in docs if d.record_id not in replaced])

    def rebuild_memory(self) -> int:
        """Index every approved record afresh (after an upgrade, or to repair); returns the count."""
        with self.db.session() as s:
            TeamMemory.clear(s)
            rows = [r for r in s.scalars(select(RecordRow).where(RecordRow.status == RecordStatus.APPROVED)
                                         .order_by(RecordRow.id)) if RecordFlag.IDENTITY not in (r.flags or ())]
            self.memory.add(s, [Document.of(r.id, r.prompt, [tuple(t) for t in r.history]) for r in rows])
            return len(rows)

    def memory_needs_rebuild(self) -> bool:
        """Approved records exist but the memory is empty: a store from before team memory."""
        with self.db.reading() as s:
            approved = s.scalar(select(RecordRow.id).where(RecordRow.status == RecordStatus.APPROVED).limit(1))
            indexed = s.scalar(select(MemoryDocRow.record_id).limit(1))
        return approved is not None and indexed is None

    # -- reading ---------------------------------------------------------------------------------
    def get(self, record_id: int) -> TrainingRecord | None:
        with self.db.reading() as s:
            row = s.get(RecordRow, record_id)
            return _entity(row) if row else None

    def list(self, status: RecordStatus | str | None = None, limit: int | None = None,
             offset: int = 0) -> list[TrainingRecord]:
        """Records oldest first, of one status or all; `offset` skips that many (paging)."""
        with self.db.reading() as s:
            query = select(RecordRow).order_by(RecordRow.id)
            if status is not None:
                query = query.where(RecordRow.status == RecordStatus(status))
            return [_entity(r) for r in s.scalars(query.offset(offset or None).limit(limit))]

    def memory_usage(self, limit: int = 5, by: str = "hits") -> list[MemoryUsage]:
        """Records that answered from team memory, with the 👍/👎 on those answers: the most used
        first (`by="hits"`) or the most disputed (`by="down"`, only records with a 👎)."""
        feedback = (select(TurnRow.memory_record_id.label("record_id"),
                           func.sum(case((FeedbackRow.kind == FeedbackKind.THUMBS_UP, 1), else_=0)).label("up"),
                           func.sum(case((FeedbackRow.kind == FeedbackKind.THUMBS_DOWN, 1), else_=0)).label("down"))
                    .join(FeedbackRow, FeedbackRow.turn_id == TurnRow.id)
                    .where(TurnRow.memory_record_id.is_not(None)).group_by(TurnRow.memory_record_id).subquery())
        up, down = func.coalesce(feedback.c.up, 0), func.coalesce(feedback.c.down, 0)
        query = select(RecordRow, up, down).outerjoin(feedback, feedback.c.record_id == RecordRow.id)
        if by == "down":
            query = query.where(down > 0).order_by(down.desc(), RecordRow.id)
        else:
            query = query.where(RecordRow.memory_hits > 0).order_by(RecordRow.memory_hits.desc(), RecordRow.id)
        with self.db.reading() as s:
            return [MemoryUsage(_entity(row), int(u), int(d)) for row, u, d in s.execute(query.limit(limit))]

    def counts(self) -> dict[str, int]:
        with self.db.reading() as s:
            rows = s.execute(select(RecordRow.status, func.count()).group_by(RecordRow.status))
            counts = {status.value: 0 for status in RecordStatus}
            counts.update({status.value: n for status, n in rows})
            return counts

    # -- snapshots -------------------------------------------------------------------------------
    def create_snapshot(self, records: Sequence[TrainingRecord], excluded: dict,
                        label_ids: Sequence[int] = ()) -> Snapshot:
        """Freeze `records` (in order) as an immutable snapshot; `excluded` says what was left out,
        `label_ids` the labelled completions its preference stage uses."""
        with self.db.session() as s:
            row = SnapshotRow(record_ids=[r.id for r in records], label_ids=list(label_ids),
                              content_hash=records_hash(r.as_record() for r in records), excluded=excluded)
            s.add(row)
            s.flush()
            return _snapshot(row)

    def snapshot(self, snapshot_id: int) -> Snapshot | None:
        with self.db.reading() as s:
            row = s.get(SnapshotRow, snapshot_id)
            return _snapshot(row) if row else None

    def snapshot_records(self, snapshot_id: int) -> list[TrainingRecord]:
        snapshot = self.snapshot(snapshot_id)
        if snapshot is None:
            raise StoreError(f"no snapshot {snapshot_id}")
        wanted = set(snapshot.record_ids)
        with self.db.reading() as s:
            # One scan beats an IN list of 100k ids (and SQLite's limit on bound parameters).
            rows = {r.id: r for r in s.scalars(select(RecordRow)) if r.id in wanted}
            missing = wanted - rows.keys()
            if missing:  # records are never deleted; say so if one was
                raise StoreError(f"snapshot {snapshot_id} refers to missing records {sorted(missing)[:5]}")
            return [_entity(rows[i]) for i in snapshot.record_ids]
