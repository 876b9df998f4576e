"""Labelled completions: what analysts said of the answers they saw (👍 desirable, 👎 not), the
pair each correction makes, and imported preference examples. Stored as given: which are usable,
and why the others are not, is decided by `feedback.intake.submissions` (on the way in) and
`feedback.learning.preferences` (for a run)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from secbot.feedback.store.db import Database
from secbot.feedback.store.entities import DownReason, LabelSource, PreferenceLabel, RecordStatus
from secbot.feedback.store.schema import LabelRow, RecordRow
from secbot.model.training.record_formats import Labelled


@dataclass(frozen=True)
class NewLabel:
    example: Labelled
    source: LabelSource
    author: str | None
    trusted: bool
    turn_id: int | None = None
    record_id: int | None = None
    model_version_id: int | None = None
    reason: DownReason | None = None
    excluded: str | None = None

    @property
    def content_hash(self) -> str:
        """The same author's same judgement of the same completion is kept once."""
        r = self.example.record
        key = [r.prompt, [list(t) for t in r.history], r.response, self.example.desirable, self.author]
        return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()


def _entity(row: LabelRow) -> PreferenceLabel:
    return PreferenceLabel(id=row.id, prompt=row.prompt, completion=row.completion,
                           history=tuple((q, a) for q, a in row.history), desirable=row.desirable,
                           source=row.source, author=row.author_id, trusted=row.trusted, turn_id=row.turn_id,
                           record_id=row.record_id, model_version_id=row.model_version_id, reason=row.reason,
                           excluded=row.excluded, created_at=row.created_at)


def _row(new: NewLabel) -> LabelRow:
    r = new.example.record
    return LabelRow(prompt=r.prompt, completion=r.response, history=[list(t) for t in r.history],
                    desirable=new.example.desirable, source=new.source, author_id=new.author,
                    trusted=new.trusted, turn_id=new.turn_id, record_id=new.record_id,
                    model_version_id=new.model_version_id, reason=new.reason, excluded=new.excluded,
                    content_hash=new.content_hash)


class Labels:
    def __init__(self, db: Database):
        self.db = db

    def add(self, new: NewLabel) -> tuple[PreferenceLabel, bool]:
        """Store `new`, or return the stored label with the same content; (label, created)."""
        with self.db.session() as s:
            return self._add(s, new)

    @staticmethod
    def _add(s: Session, new: NewLabel) -> tuple[PreferenceLabel, bool]:
        existing = s.scalar(select(LabelRow).filter_by(content_hash=new.content_hash))
        if existing is not None:
            return _entity(existing), False
        row = _row(new)
        s.add(row)
        s.flush()
        return _entity(row), True

    def add_many(self, items: Sequence[NewLabel], session: Session | None = None) -> tuple[int, int]:
        """Store many labels in one transaction (imports; `session`: the caller's); (added, duplicates)."""
        if session is None:
            with self.db.session() as s:
                return self.add_many(items, s)
        chunk = {new.content_hash: new for new in reversed(items)}  # the first of equal ones
        known = set()
        for start in range(0, len(chunk), 1000):
            part = list(chunk)[start:start + 1000]
            known |= set(session.scalars(select(LabelRow.content_hash).where(LabelRow.content_hash.in_(part))))
        fresh = [new for digest, new in chunk.items() if digest not in known]
        session.add_all([_row(new) for new in reversed(fresh)])
        session.flush()
        return len(fresh), len(items) - len(fresh)

    def set_reason(self, turn_id: int, author: str, reason: DownReason | str) -> int:
        """The reason an analyst gave for a 👎 goes on their undesirable label of that turn."""
        with self.db.session() as s:
            rows = s.scalars(select(LabelRow).filter_by(turn_id=turn_id, author_id=author, desirable=False))
            count = 0
            for row in rows:
                row.reason, count = DownReason(reason), count + 1
            return count

    def usable(self) -> list[PreferenceLabel]:
        """Labels that may train, oldest first: not excluded, and, where a correction made them,
        while that correction is approved."""
        with self.db.reading() as s:
            rows = s.scalars(select(LabelRow).outerjoin(RecordRow, RecordRow.id == LabelRow.record_id)
                             .where(LabelRow.excluded.is_(None),
                                    or_(LabelRow.record_id.is_(None), RecordRow.status == RecordStatus.APPROVED))
                             .order_by(LabelRow.id))
            return [_entity(row) for row in rows]

    def list(self, turn_id: int | None = None, limit: int | None = None) -> list[PreferenceLabel]:
        with self.db.reading() as s:
            query = select(LabelRow).order_by(LabelRow.id)
            if turn_id is not None:
                query = query.filter_by(turn_id=turn_id)
            return [_entity(row) for row in s.scalars(query.limit(limit))]

    def excluded_counts(self) -> dict[str, int]:
        """Labels kept but never trained, by reason (identity, impostor, history)."""
        with self.db.reading() as s:
            rows = s.execute(select(LabelRow.excluded, func.count()).where(LabelRow.excluded.is_not(None))
                             .group_by(LabelRow.excluded)).all()
        return {reason: n for reason, n in rows}

    def counts(self) -> dict[str, int]:
        """Labels by kind: desirable, undesirable, excluded."""
        with self.db.reading() as s:
            rows = s.execute(select(LabelRow.desirable, LabelRow.excluded.is_(None), func.count())
                             .group_by(LabelRow.desirable, LabelRow.excluded.is_(None))).all()
        out = {"desirable": 0, "undesirable": 0, "excluded": 0}
        for desirable, usable, n in rows:
            out["desirable" if usable and desirable else "undesirable" if usable else "excluded"] += n
        return out
