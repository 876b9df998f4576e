"""Conversations: Slack threads, their turns (question and answer), every message of an answer,
and the feedback analysts give on turns. Text arrives here already redacted (`feedback.intake.submissions`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from secbot.feedback.errors import StoreError
from secbot.feedback.store.db import Database
from secbot.feedback.store.entities import DownReason, DownVote, FeedbackKind, FeedbackSource, Turn
from secbot.feedback.store.owners import owner_alive, this_process
from secbot.feedback.store.schema import AnswerMessageRow, FeedbackRow, RecordRow, ThreadRow, TurnRow, utcnow

TURN_COLUMNS = (TurnRow, ThreadRow.channel_id, ThreadRow.thread_ts)


def _turn(row: TurnRow, channel: str, thread_ts: str) -> Turn:
    return Turn(id=row.id, channel=channel, thread_ts=thread_ts, question=row.question,
                answer=row.answer, asker=row.asker_id, question_ts=row.question_ts,
                answer_ts=row.answer_ts, model_version_id=row.model_version_id,
                memory_record_id=row.memory_record_id, error_id=row.error_id,
                latency_ms=row.latency_ms, prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens, created_at=row.created_at, owner=row.owner)


class Conversations:
    def __init__(self, db: Database):
        self.db = db

    def _thread_id(self, s: Session, channel: str, thread_ts: str) -> int:
        found = s.scalar(select(ThreadRow.id).filter_by(channel_id=channel, thread_ts=thread_ts))
        if found is not None:
            return found
        try:
            with s.begin_nested():
                thread = ThreadRow(channel_id=channel, thread_ts=thread_ts)
                s.add(thread)
            return thread.id
        except IntegrityError:  # another process created it first
            return s.scalar(select(ThreadRow.id).filter_by(channel_id=channel, thread_ts=thread_ts))

    def record_question(self, *, channel: str, thread_ts: str, question: str, asker: str | None = None,
                        question_ts: str | None = None, redactions: int = 0) -> int:
        """Store a question as soon as it arrives (so it is kept even if answering fails)."""
        with self.db.session() as s:
            turn = TurnRow(thread_id=self._thread_id(s, channel, thread_ts), question=question,
                           asker_id=asker, question_ts=question_ts, redactions=redactions, owner=this_process())
            s.add(turn)
            s.flush()
            return turn.id

    def record_answer(self, turn_id: int, *, answer: str | None, answer_ts: str | None = None,
                      model_version_id: int | None = None, memory_record_id: int | None = None,
                      latency_ms: int | None = None, prompt_tokens: int | None = None,
                      completion_tokens: int | None = None, error_id: str | None = None,
                      redactions: int = 0) -> None:
        with self.db.session() as s:
            turn = s.get(TurnRow, turn_id)
            if turn is None:
                raise StoreError(f"no turn {turn_id}")
            turn.answer, turn.answer_ts, turn.error_id = answer, answer_ts, error_id
            turn.model_version_id, turn.memory_record_id = model_version_id, memory_record_id
            turn.latency_ms, turn.prompt_tokens, turn.completion_tokens = latency_ms, prompt_tokens, completion_tokens
            turn.redactions += redactions
            if memory_record_id is not None:  # counted on the record, in the same transaction
                s.execute(update(RecordRow).where(RecordRow.id == memory_record_id).values(
                    memory_hits=RecordRow.memory_hits + 1, last_hit_at=utcnow()))

    def add_answer_messages(self, turn_id: int, channel: str, message_ts: Sequence[str]) -> None:
        """Every Slack message that shows a piece of the turn's answer (kept once each)."""
        with self.db.session() as s:
            known = set(s.scalars(select(AnswerMessageRow.ts).where(
                AnswerMessageRow.channel_id == channel, AnswerMessageRow.ts.in_(list(message_ts)))))
            s.add_all(AnswerMessageRow(channel_id=channel, ts=ts, turn_id=turn_id)
                      for ts in dict.fromkeys(message_ts) if ts not in known)

    def answer_messages(self, turn_id: int) -> list[str]:
        with self.db.reading() as s:
            return sorted(s.scalars(select(AnswerMessageRow.ts).where(AnswerMessageRow.turn_id == turn_id)),
                          key=float)

    def get_turn(self, turn_id: int) -> Turn | None:
        with self.db.reading() as s:
            row = s.execute(select(*TURN_COLUMNS).join(ThreadRow, ThreadRow.id == TurnRow.thread_id)
                            .where(TurnRow.id == turn_id)).first()
            return _turn(*row) if row else None

    def turn_for_message(self, channel: str, ts: str) -> Turn | None:
        """The turn whose answer includes the Slack message `ts` (any piece of a split answer).
        A question's own message is not its answer: feedback there is not feedback on the answer."""
        with self.db.reading() as s:
            turn_id = s.scalar(select(AnswerMessageRow.turn_id).filter_by(channel_id=channel, ts=ts))
        return self.get_turn(turn_id) if turn_id is not None else None

    def thread_history(self, channel: str, thread_ts: str,
                       before_turn: int | None = None) -> list[tuple[str, str]]:
        """The thread's answered turns, oldest first, as `[q, a]` history."""
        with self.db.reading() as s:
            query = (select(TurnRow.question, TurnRow.answer).join(ThreadRow, ThreadRow.id == TurnRow.thread_id)
                     .where(ThreadRow.channel_id == channel, ThreadRow.thread_ts == thread_ts,
                            TurnRow.answer.is_not(None), TurnRow.error_id.is_(None)).order_by(TurnRow.id))
            if before_turn is not None:
                query = query.where(TurnRow.id < before_turn)
            return [(q, a) for q, a in s.execute(query)]

    def thread_turns(self, channel: str, thread_ts: str) -> list[Turn]:
        """Every turn of a thread, oldest first, answered or not."""
        with self.db.reading() as s:
            rows = s.execute(select(*TURN_COLUMNS).join(ThreadRow, ThreadRow.id == TurnRow.thread_id)
                             .where(ThreadRow.channel_id == channel, ThreadRow.thread_ts == thread_ts)
                             .order_by(TurnRow.id)).all()
            return [_turn(*row) for row in rows]

    def thread_known(self, channel: str, thread_ts: str) -> bool:
        with self.db.reading() as s:
            return s.scalar(select(ThreadRow.id).filter_by(channel_id=channel, thread_ts=thread_ts)) is not None

    def unfinished_turns(self, before: datetime) -> list[Turn]:
        """Questions with neither answer nor error whose process died: its owner is gone (seen at
        once on the owner's host), or they were stored before `before` (any host)."""
        with self.db.reading() as s:
            rows = s.execute(select(*TURN_COLUMNS).join(ThreadRow, ThreadRow.id == TurnRow.thread_id)
                             .where(TurnRow.answer.is_(None), TurnRow.error_id.is_(None))
                             .order_by(TurnRow.id)).all()
            turns = [_turn(*row) for row in rows]
        return [t for t in turns if t.created_at < before or owner_alive(t.owner) is False]

    def mark_failed(self, turn_id: int, error_id: str) -> bool:
        """Give an unfinished turn an error id; False when it finished meanwhile."""
        with self.db.session() as s:
            done = s.execute(update(TurnRow).where(TurnRow.id == turn_id, TurnRow.answer.is_(None),
                                                   TurnRow.error_id.is_(None)).values(error_id=error_id))
            return done.rowcount == 1

    # -- feedback ------------------------------------------------------------------------------
    def record_feedback(self, turn_id: int, user: str, kind: FeedbackKind | str,
                        source: FeedbackSource | str) -> bool:
        """Store one feedback event; the same user, turn and kind is kept once. True if new."""
        kind, source = FeedbackKind(kind), FeedbackSource(source)
        with self.db.session() as s:
            if s.get(TurnRow, turn_id) is None:
                raise StoreError(f"no turn {turn_id}")
            try:
                with s.begin_nested():
                    s.add(FeedbackRow(turn_id=turn_id, user_id=user, kind=kind, source=source))
                return True
            except IntegrityError:
                return False

    def feedback_counts(self, turn_id: int) -> dict[str, int]:
        with self.db.reading() as s:
            rows = s.execute(select(FeedbackRow.kind, func.count()).where(
                FeedbackRow.turn_id == turn_id).group_by(FeedbackRow.kind))
            return {kind.value: n for kind, n in rows}

    def record_down_reason(self, turn_id: int, user: str, reason: DownReason | str, note: str | None,
                           source: FeedbackSource | str) -> None:
        """What `user` says was wrong with the turn's answer: their 👎 (made now if they gave
        none yet) gets the reason and their words (already redacted); a later reason replaces it."""
        reason, source = DownReason(reason), FeedbackSource(source)
        with self.db.session() as s:
            if s.get(TurnRow, turn_id) is None:
                raise StoreError(f"no turn {turn_id}")
            row = s.scalar(select(FeedbackRow).filter_by(turn_id=turn_id, user_id=user,
                                                         kind=FeedbackKind.THUMBS_DOWN))
            if row is None:
                try:
                    with s.begin_nested():
                        row = FeedbackRow(turn_id=turn_id, user_id=user, kind=FeedbackKind.THUMBS_DOWN,
                                          source=source)
                        s.add(row)
                except IntegrityError:  # the 👎 itself arrived meanwhile
                    row = s.scalar(select(FeedbackRow).filter_by(turn_id=turn_id, user_id=user,
                                                                 kind=FeedbackKind.THUMBS_DOWN))
            row.reason, row.note = reason, note or None

    def down_votes(self, turn_ids: Sequence[int]) -> dict[int, list[DownVote]]:
        """The 👎s on each of `turn_ids`, oldest first."""
        with self.db.reading() as s:
            rows = s.scalars(select(FeedbackRow).where(FeedbackRow.turn_id.in_(list(turn_ids)),
                                                       FeedbackRow.kind == FeedbackKind.THUMBS_DOWN)
                             .order_by(FeedbackRow.id))
            found: dict[int, list[DownVote]] = {}
            for row in rows:
                found.setdefault(row.turn_id, []).append(_down_vote(row))
            return found

    def down_votes_on_memory_answers(self, record_ids: Sequence[int]) -> dict[int, list[DownVote]]:
        """The 👎s on answers each of `record_ids` gave from team memory, oldest first."""
        with self.db.reading() as s:
            rows = s.execute(select(FeedbackRow, TurnRow.memory_record_id)
                             .join(TurnRow, TurnRow.id == FeedbackRow.turn_id)
                             .where(TurnRow.memory_record_id.in_(list(record_ids)),
                                    FeedbackRow.kind == FeedbackKind.THUMBS_DOWN).order_by(FeedbackRow.id))
            found: dict[int, list[DownVote]] = {}
            for row, record_id in rows:
                found.setdefault(record_id, []).append(_down_vote(row))
            return found

    def recent_down_votes(self, limit: int = 5) -> list[tuple[DownVote, Turn]]:
        """The newest 👎s, each with its turn, newest first."""
        with self.db.reading() as s:
            rows = s.execute(select(FeedbackRow, *TURN_COLUMNS).join(TurnRow, TurnRow.id == FeedbackRow.turn_id)
                             .join(ThreadRow, ThreadRow.id == TurnRow.thread_id)
                             .where(FeedbackRow.kind == FeedbackKind.THUMBS_DOWN)
                             .order_by(FeedbackRow.id.desc()).limit(limit)).all()
            return [(_down_vote(feedback), _turn(turn, channel, ts)) for feedback, turn, channel, ts in rows]


def _down_vote(row: FeedbackRow) -> DownVote:
    return DownVote(row.turn_id, row.user_id, row.reason, row.note, row.created_at)
