"""What enters the store, and with which review status.

Every text secbot keeps passes through here: questions, answers, corrections, 👍'd answers,
labelled completions (👍/👎 on model answers, the pair each correction makes), what an analyst
says was wrong with an answer, why a reviewer rejected a record, imports. Each is redacted first (`feedback.intake.redaction`). A new record is approved at once only
when a trusted analyst sent it and nothing about it needs a human: identity questions and
answers claiming another assistant's identity wait for review whoever sends them, imports
included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from secbot.feedback.errors import StoreError
from secbot.feedback.intake.identity import IdentityGuard
from secbot.feedback.intake.redaction import Redactor
from secbot.feedback.store.entities import (
    DownReason,
    FeedbackSource,
    LabelSource,
    PreferenceLabel,
    RecordFlag,
    RecordSource,
    RecordStatus,
    TrainingRecord,
    Turn,
)
from secbot.feedback.store.labels import NewLabel
from secbot.feedback.store.records import NewRecord
from secbot.feedback.store.repositories import Store
from secbot.model.training.record_formats import Columns, Labelled, Record, read_records

AUTO_APPROVED = "auto:trusted"
FLAG_REASONS = {RecordFlag.IDENTITY.value: "it answers who the assistant is, which only the configured identity may",
                RecordFlag.IMPOSTOR.value: "its answer speaks as another assistant or vendor",
                RecordFlag.HISTORY.value: "its thread history asks who the assistant is, speaks as another "
                                          "assistant, or holds turns from someone who is not a trusted analyst",
                RecordFlag.REVOKED.value: "it repeats an answer that an admin revoked",
                RecordFlag.DISPUTED.value: "an analyst gave its team answer 👎"}


@dataclass(frozen=True)
class Submission:
    """A correction or 👍 as stored: the record, and whether it is new."""

    record: TrainingRecord
    created: bool

    def message(self) -> str:
        """What to tell the analyst who sent it."""
        rec = self.record
        if not self.created:
            return {
                RecordStatus.REJECTED: f"This exact answer was already submitted and rejected (record #{rec.id}); "
                                       "it will not be reviewed again. Write a different answer, or ask an admin.",
                RecordStatus.APPROVED: f"This exact answer is already approved as record #{rec.id}.",
                RecordStatus.PENDING: f"This exact answer already waits for review as record #{rec.id}.",
                RecordStatus.SUPERSEDED: f"This exact answer was record #{rec.id}, since replaced by "
                                         f"record #{rec.superseded_by}.",
                RecordStatus.REVOKED: f"This exact answer was record #{rec.id}, which an admin revoked; "
                                      "it will not be used.",
            }[rec.status]
        if rec.status is RecordStatus.APPROVED:
            return (f"Thanks! Saved as record #{rec.id} and approved: secbot answers with it from now on, "
                    "and the next training run learns it.")
        if rec.flags:
            why = "; ".join(FLAG_REASONS.get(f, f) for f in rec.flags)
            return f"Thanks! Saved as record #{rec.id}. An admin must review it first: {why}."
        return f"Thanks! Saved as record #{rec.id}, waiting for an admin's review."


def _label_source(source: FeedbackSource | str) -> LabelSource:
    return LabelSource.REACTION if FeedbackSource(source) is FeedbackSource.REACTION else LabelSource.BUTTON


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int
    redactions: int
    flagged: int  # held for review although imported as approved
    labels: int = 0  # labelled completions added (trl preference lines)
    label_duplicates: int = 0
    labels_excluded: int = 0  # identity or impostor completions, kept but never trained


class Intake:
    def __init__(self, store: Store, *, trusted: Iterable[str] = (), redactor: Redactor | None = None,
                 guard: IdentityGuard | None = None):
        self.store = store
        self.trusted = set(trusted)
        self.redactor = redactor or Redactor()
        self.guard = guard or IdentityGuard()

    # -- conversation text -----------------------------------------------------------------------
    def question(self, *, channel: str, thread_ts: str, question: str, asker: str | None,
                 question_ts: str | None, history: Sequence[tuple[str, str]] | None = None) -> int:
        """Stores a question, redacted after the question the thread asked last (as stored), what a follow-up
        speaks of: `new one is X` in a thread that asked for the vpn password is that password, however long
        the answer between them. `history` is the thread's answered turns when the caller has read them."""
        if history is None:
            history = self.store.conversations.thread_history(channel, thread_ts)
        clean = self.redactor.redact(question, history[-1][0] if history else "")
        return self.store.conversations.record_question(channel=channel, thread_ts=thread_ts,
                                                        question=clean.text, asker=asker,
                                                        question_ts=question_ts, redactions=clean.count)

    def answer(self, turn_id: int, answer: str | None, question: str | None = None, **fields) -> None:
        """Stores an answer, redacted after the question it answers (`question`, or the stored one)."""
        if answer and question is None:
            turn = self.store.conversations.get_turn(turn_id)
            question = turn.question if turn else ""
        clean = self.redactor.redact(answer or "", question or "")
        self.store.conversations.record_answer(turn_id, answer=clean.text if answer is not None else None,
                                               redactions=clean.count, **fields)

    def down_reason(self, turn_id: int, user: str, reason: DownReason | str, note: str | None,
                    source: FeedbackSource | str) -> None:
        """What an analyst says was wrong with an answer they gave 👎, their words redacted; the
        reason also goes on their labelled completion."""
        self.store.conversations.record_down_reason(turn_id, user, reason, self._note(note), source)
        if not self.store.labels.set_reason(turn_id, user, reason):  # the 👎 came with its reason
            self.label(turn_id, user, desirable=False, source=_label_source(source), reason=DownReason(reason))

    def thumbs_down(self, turn_id: int, user: str,
                    source: FeedbackSource | str = FeedbackSource.REACTION) -> TrainingRecord | None:
        """A 👎 on a turn: when the team's memory gave that answer, its record goes back to review
        and stops answering (returned); on a model answer, it labels the answer undesirable."""
        turn = self.store.conversations.get_turn(turn_id)
        if turn is None:
            return None
        if turn.memory_record_id is None:
            self.label(turn_id, user, desirable=False, source=_label_source(source))
            return None
        return self.store.records.dispute(turn.memory_record_id)

    # -- labelled completions ----------------------------------------------------------------
    def label(self, turn_id: int, user: str, *, desirable: bool, source: LabelSource | str,
              reason: DownReason | None = None) -> PreferenceLabel | None:
        """A 👍 (desirable) or 👎 on a model answer as a labelled completion: the turn's question,
        the thread's earlier turns, the answer as shown, and the version that gave it. None where
        there is nothing to label: no answer, or an answer from team memory (its 👍/👎 feed the
        memory instead). Identity and impostor completions, and threads holding an untrusted
        analyst's turns, are kept but excluded from training, with the reason."""
        turn, history, askers = self._turn_and_history(turn_id)
        if not turn.answer or turn.error_id or turn.memory_record_id is not None:
            return None
        example = Labelled(Record(turn.question, turn.answer, tuple(history)), desirable)
        new = self._new_label(example, LabelSource(source), user, turn=turn, reason=reason,
                              foreign_turns=bool({a for a in askers if a} - self.trusted - {user}))
        return self.store.labels.add(new)[0]

    def _new_label(self, example: Labelled, source: LabelSource, author: str, *, turn: Turn | None = None,
                   record_id: int | None = None, reason: DownReason | None = None,
                   foreign_turns: bool = False) -> NewLabel:
        """The label as stored: redacted (a no-op for text the store already holds), and excluded
        with the first reason it must never train."""
        record, _ = self.clean(example.record)
        flags = list(self.guard.flags(record)) + ([RecordFlag.HISTORY.value] if foreign_turns else [])
        return NewLabel(Labelled(record, example.desirable), source, author,
                        trusted=author in self.trusted or source is LabelSource.IMPORT, turn_id=turn.id if turn else None,
                        record_id=record_id, model_version_id=turn.model_version_id if turn else None,
                        reason=reason, excluded=flags[0] if flags else None)

    def _correction_pair(self, turn: Turn, record: TrainingRecord, author: str, foreign_turns: bool) -> None:
        """A correction also labels: its answer desirable, the answer it corrected undesirable,
        both counting while the correction is approved. Team-memory answers feed the memory."""
        if not turn.answer or turn.error_id or turn.memory_record_id is not None:
            return
        base = record.as_record()
        for completion, desirable in ((base.response, True), (turn.answer, False)):
            example = Labelled(Record(base.prompt, completion, base.history), desirable)
            self.store.labels.add(self._new_label(example, LabelSource.CORRECTION, author, turn=turn,
                                                  record_id=record.id, foreign_turns=foreign_turns))

    def reject(self, record_id: int, reviewer: str, note: str | None = None) -> TrainingRecord:
        """An admin rejects a pending record, saying why (redacted)."""
        return self.store.records.review(record_id, reviewer, approve=False, note=self._note(note))

    def _note(self, note: str | None) -> str | None:
        return self.redactor.redact(note.strip()).text if note and note.strip() else None

    # -- records ---------------------------------------------------------------------------------
    def correction(self, turn_id: int, author: str, text: str) -> Submission:
        """An analyst's corrected answer to a turn: the turn's question as prompt, the thread's
        earlier turns as history."""
        if not text.strip():
            raise StoreError("a correction needs an answer")
        turn, history, askers = self._turn_and_history(turn_id)
        submission = self._submit(Record(turn.question, text, tuple(history)), RecordSource.CORRECTION, author,
                                  turn, askers)
        if submission.record.status is not RecordStatus.REJECTED:
            self._correction_pair(turn, submission.record, author,
                                  foreign_turns=bool({a for a in askers if a} - self.trusted - {author}))
        return submission

    def thumbs_up(self, turn_id: int, user: str,
                  source: FeedbackSource | str = FeedbackSource.REACTION) -> Submission | None:
        """A 👍'd answer as a record, and, on a model answer, labelled desirable; None when the
        turn has no answer."""
        turn, history, askers = self._turn_and_history(turn_id)
        if not turn.answer or turn.error_id:
            return None
        self.label(turn_id, user, desirable=True, source=_label_source(source))
        return self._submit(Record(turn.question, turn.answer, tuple(history)), RecordSource.APPROVED_ANSWER,
                            user, turn, askers)

    def _turn_and_history(self, turn_id: int) -> tuple[Turn, list[tuple[str, str]], set[str | None]]:
        """The turn, the thread's earlier answered turns as history, and who asked those."""
        turn = self.store.conversations.get_turn(turn_id)
        if turn is None:
            raise StoreError(f"no turn {turn_id}")
        earlier = [t for t in self.store.conversations.thread_turns(turn.channel, turn.thread_ts)
                   if t.id < turn.id and t.answer is not None and t.error_id is None]
        return turn, [(t.question, t.answer) for t in earlier], {t.asker for t in earlier}

    def clean(self, record: Record) -> tuple[Record, int]:
        """The record with every field redacted, and how many secrets were replaced."""
        found = 0

        def redact(text: str, context: str = "") -> str:
            nonlocal found
            result = self.redactor.redact(text, context)
            found += result.count
            return result.text

        # Each text is read after the one it follows in the conversation, as analysts wrote them.
        history, before = [], ""
        for q, a in record.history:
            history.append((redact(q, before), redact(a, q)))
            before = a
        return Record(redact(record.prompt, before), redact(record.response, record.prompt), tuple(history)), found

    def _new(self, record: Record, source: RecordSource, author: str | None, *, approve: bool,
             turn: Turn | None = None, extra_flags: tuple[str, ...] = (),
             cleaned: tuple[Record, int] | None = None) -> NewRecord:
        record, redactions = cleaned or self.clean(record)
        flags = tuple(dict.fromkeys(self.guard.flags(record) + extra_flags))
        approved = approve and not flags
        return NewRecord(record, source, RecordStatus.APPROVED if approved else RecordStatus.PENDING, author,
                         reviewer=(AUTO_APPROVED if author in self.trusted else author) if approved else None,
                         turn_id=turn.id if turn else None,
                         model_version_id=turn.model_version_id if turn else None,
                         flags=flags, redactions=redactions)

    def _submit(self, record: Record, source: RecordSource, author: str, turn: Turn,
                askers: set[str | None]) -> Submission:
        extra = []
        if {a for a in askers if a} - self.trusted - {author}:
            extra.append(RecordFlag.HISTORY.value)  # one analyst's record may not carry another's turns unreviewed
        cleaned = self.clean(record)
        if self._repeats_revoked(turn, cleaned[0].response):
            extra.append(RecordFlag.REVOKED.value)
        new = self._new(record, source, author, approve=author in self.trusted, turn=turn, extra_flags=tuple(extra),
                        cleaned=cleaned)
        stored, created = self.store.records.add(new)
        if not created and stored.status is RecordStatus.REVOKED:
            stored, created = self.store.records.resubmit_revoked(stored.id, author), True
        return Submission(stored, created)

    def _repeats_revoked(self, turn: Turn, response: str) -> bool:
        """The answer came from a record an admin revoked, or is that record's (redacted) text."""
        answered_by = self.store.records.get(turn.memory_record_id) if turn.memory_record_id else None
        if answered_by is not None and answered_by.status is RecordStatus.REVOKED:
            return True
        return self.store.records.revoked_with_response(response) is not None

    def import_records(self, records: Sequence[Record], *, status: RecordStatus | str, author: str,
                       labelled: Sequence[Labelled] = ()) -> ImportResult:
        """Records and labelled completions from a file, in one transaction. Approved records still
        wait for review when flagged; identity and impostor completions are kept, excluded."""
        approve = RecordStatus(status) is RecordStatus.APPROVED
        items = [self._new(r, RecordSource.IMPORT, author, approve=approve) for r in records]
        labels = [self._new_label(x, LabelSource.IMPORT, author) for x in labelled]
        with self.store.db.session() as s:
            added, duplicates = self.store.records.add_many(items, session=s)
            labels_added, label_duplicates = self.store.labels.add_many(labels, session=s)
        return ImportResult(added, duplicates, sum(i.redactions for i in items),
                            sum(1 for i in items if approve and i.flags), labels_added, label_duplicates,
                            sum(1 for x in labels if x.excluded))

    def import_file(self, path: str | Path, *, status: RecordStatus | str = RecordStatus.APPROVED,
                    author: str = "import", columns: Columns = Columns()) -> ImportResult:
        """All records and labelled completions of a file or none: a malformed line imports
        nothing and is named."""
        read = read_records(path, columns, labelled=True)
        return self.import_records(read.records, status=status, author=author, labelled=read.labelled)
