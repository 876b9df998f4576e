"""What the feedback store hands out: plain, immutable dataclasses and the enums they use.

Repositories return these rather than ORM rows, so nothing outside `feedback` depends on a
session being open or on the schema's shape.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from secbot.model.training.record_formats import Labelled, Record


class FeedbackKind(str, enum.Enum):
    THUMBS_UP = "thumbs_up"
    THUMBS_DOWN = "thumbs_down"
    CORRECTION_REQUESTED = "correction_requested"


class DownReason(str, enum.Enum):
    """What an analyst says was wrong with an answer they gave 👎."""

    WRONG = "wrong"
    OUTDATED = "outdated"
    UNSAFE = "unsafe"
    TOO_VAGUE = "too_vague"
    OTHER = "other"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class FeedbackSource(str, enum.Enum):
    REACTION = "reaction"
    BUTTON = "button"
    SHORTCUT = "shortcut"


class RecordSource(str, enum.Enum):
    CORRECTION = "correction"
    APPROVED_ANSWER = "approved_answer"
    IMPORT = "import"


class LabelSource(str, enum.Enum):
    """Where a labelled completion came from."""

    REACTION = "reaction"  # 👍/👎 reaction on a model answer
    BUTTON = "button"  # the answer's feedback buttons
    CORRECTION = "correction"  # a correction: its answer desirable, the one it corrected not
    IMPORT = "import"  # trl's preference formats through `secbot import`


class RecordFlag(str, enum.Enum):
    """Why a reviewer must look at a record, whoever sent it."""

    IDENTITY = "identity"  # it answers who the assistant is
    IMPOSTOR = "impostor"  # its answer speaks as another assistant or vendor
    HISTORY = "history"  # its thread history speaks as another assistant, or holds untrusted turns
    REVOKED = "revoked"  # it repeats what an admin revoked
    DISPUTED = "disputed"  # an analyst gave its team answer 👎: it waits for review, out of memory


class RecordStatus(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"  # a newer approved record answers the same question
    REVOKED = "revoked"  # an admin took an approved record back


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    REJECTED = "rejected"
    PROMOTED = "promoted"

    @property
    def finished(self) -> bool:
        return self in (RunState.FAILED, RunState.REJECTED, RunState.PROMOTED)


class VersionStatus(str, enum.Enum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class Turn:
    """One question in a Slack thread and the answer secbot gave, with what produced it."""

    id: int
    channel: str
    thread_ts: str
    question: str
    answer: str | None
    asker: str | None
    question_ts: str | None
    answer_ts: str | None  # the answer's first message; `answer_messages` has every piece
    model_version_id: int | None
    memory_record_id: int | None  # the team record that answered it, when memory did
    error_id: str | None
    latency_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime
    owner: str | None = None  # the process that claimed it (`feedback.store.owners`)

    @property
    def finished(self) -> bool:
        return self.answer is not None or self.error_id is not None

    @property
    def is_direct_message(self) -> bool:
        return self.channel.startswith("D")


@dataclass(frozen=True)
class DownVote:
    """A 👎 on a turn, with what the analyst said was wrong (once they said it)."""

    turn_id: int
    user: str
    reason: DownReason | None
    note: str | None  # their own words (redacted), for "other" or in addition
    created_at: datetime


@dataclass(frozen=True)
class TrainingRecord:
    """A `{prompt, response, history}` example with its provenance and review state."""

    id: int
    prompt: str
    response: str
    history: tuple[tuple[str, str], ...]
    source: RecordSource
    status: RecordStatus
    author: str | None
    reviewer: str | None
    reviewed_at: datetime | None
    turn_id: int | None
    model_version_id: int | None
    flags: tuple[str, ...]  # why a reviewer must look: "identity", "impostor"
    superseded_by: int | None
    created_at: datetime
    review_note: str | None = None  # why a reviewer rejected it (redacted)
    memory_hits: int = 0  # answers it gave from team memory
    last_hit_at: datetime | None = None

    def as_record(self) -> Record:
        return Record(self.prompt, self.response, self.history)


@dataclass(frozen=True)
class PreferenceLabel:
    """A completion labelled desirable (👍) or undesirable (👎), with who, when and what produced it.

    `excluded` says why it never trains (identity, impostor, history); a label tied to a correction
    (`record_id`) counts only while that record is approved; `trusted` says whether its author was a
    trusted analyst when labelling (an untrusted author's labels count only within a share)."""

    id: int
    prompt: str
    completion: str
    history: tuple[tuple[str, str], ...]
    desirable: bool
    source: LabelSource
    author: str | None
    trusted: bool
    turn_id: int | None
    record_id: int | None
    model_version_id: int | None
    reason: DownReason | None
    excluded: str | None
    created_at: datetime

    def as_labelled(self) -> Labelled:
        return Labelled(Record(self.prompt, self.completion, self.history), self.desirable)


@dataclass(frozen=True)
class MemoryUsage:
    """How a record does as a team answer: how often it answered, and what analysts said."""

    record: TrainingRecord
    thumbs_up: int
    thumbs_down: int


@dataclass(frozen=True)
class Snapshot:
    """An immutable, ordered list of approved record ids frozen for one training run."""

    id: int
    record_ids: tuple[int, ...]
    content_hash: str
    excluded: dict
    created_at: datetime
    label_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Run:
    id: int
    state: RunState
    snapshot_id: int | None
    method: str
    hyperparameters: dict
    metrics: dict
    log_path: str | None
    requested_by: str | None
    error: str | None
    report: dict = field(default_factory=dict)  # what the admins are told (see RunReport)
    reported_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None


@dataclass(frozen=True)
class Version:
    """A servable model: the base plus, optionally, an adapter. At most one is active."""

    id: int
    adapter_path: str | None
    base_model: str
    run_id: int | None
    status: VersionStatus
    metrics: dict
    created_at: datetime
    promoted_at: datetime | None
    promoted_by: str | None
