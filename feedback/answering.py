"""The answering policy, one code path for the Slack bot, `secbot chat` and the demo.

- A confident team-memory match: the team's approved answer, with its provenance, no model call.
- A weaker match: the model answers with the best few approved records in its system prompt as
  reference (a real model uses them; the tiny reference model cannot), and the reply lists them.
- No match: the model alone.

A thread's earlier questions are the context when ranking, so a follow-up ("how do I stop it?")
matches the record written for that thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from secbot.feedback.intake.submissions import AUTO_APPROVED
from secbot.feedback.memory.matching import CONFIDENT, REFERENCE, Match
from secbot.feedback.store.entities import TrainingRecord
from secbot.feedback.store.memory_index import TeamMemory
from secbot.feedback.store.records import Records
from secbot.model.serving.client import ModelClient, Usage

REFERENCE_CHARS = 800  # of each reference's answer put into the prompt


@dataclass(frozen=True)
class MemoryPolicy:
    """When memory answers. Confidences are in [0, 1] (see `feedback.memory.matching`)."""

    enabled: bool = True
    confident: float = CONFIDENT  # at or above: the team's answer, no model call
    reference: float = REFERENCE  # at or above: given to the model as reference
    max_references: int = 3


@dataclass
class Reply:
    """An answer being given: its text arrives through `deltas()`."""

    kind: str  # "memory", "model+references" or "model"
    record: TrainingRecord | None = None  # the team record that answers ("memory")
    confidence: float = 0.0
    references: list[TrainingRecord] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    _deltas: Iterator[str] | None = None

    def deltas(self) -> Iterator[str]:
        if self.record is not None:
            yield self.record.response
            return
        yield from self._deltas or ()

    @property
    def from_memory(self) -> bool:
        return self.kind == "memory"


def approver(record: TrainingRecord) -> str | None:
    """Who vouched for a record: its reviewer, or its trusted author when auto-approved."""
    return record.author if record.reviewer == AUTO_APPROVED else record.reviewer


def provenance(record: TrainingRecord, name_of=lambda user: user) -> str:
    """"Team answer · approved by @x on DATE · record #N"."""
    who = approver(record)
    when = f" on {record.reviewed_at:%Y-%m-%d}" if record.reviewed_at else ""
    by = f" by @{name_of(who)}" if who else ""
    return f"Team answer · approved{by}{when} · record #{record.id}"


def references_prompt(system_prompt: str | None, references: Sequence[TrainingRecord]) -> str:
    """The system prompt with the team's approved answers appended as reference."""
    lines = [system_prompt or "", "",
             "Approved answers from the security team that may help. Use them where they apply "
             "and cite them as [#N]:"]
    for record in references:
        answer = record.response if len(record.response) <= REFERENCE_CHARS else \
            record.response[:REFERENCE_CHARS] + "…"
        lines.append(f"[#{record.id}] Q: {record.prompt}\nA: {answer}")
    return "\n".join(lines).strip()


class Responder:
    def __init__(self, memory: TeamMemory, records: Records, model: ModelClient,
                 policy: MemoryPolicy = MemoryPolicy(), system_prompt: str | None = None):
        self.memory, self.records, self.model = memory, records, model
        self.policy, self.system_prompt = policy, system_prompt

    def lookup(self, question: str, history: Sequence[Sequence[str]] = ()) -> list[tuple[Match, TrainingRecord]]:
        """Memory matches worth using (at or above the reference threshold), best first."""
        if not self.policy.enabled:
            return []
        found = []
        for match in self.memory.search(question, [q for q, _ in history], k=self.policy.max_references + 2,
                                        floor=self.policy.reference, exact=self.policy.confident):
            if match.confidence < self.policy.reference:
                break
            record = self.records.get(match.record_id)
            if record is not None:
                found.append((match, record))
        return found[: self.policy.max_references]

    def reply(self, question: str, history: Sequence[Sequence[str]] = ()) -> Reply:
        matches = self.lookup(question, history)
        if matches and matches[0][0].confidence >= self.policy.confident:
            match, record = matches[0]
            return Reply("memory", record=record, confidence=match.confidence)
        usage = Usage()
        references = [record for _, record in matches]
        system = references_prompt(self.system_prompt, references) if references else None
        return Reply("model+references" if references else "model", references=references,
                     confidence=matches[0][0].confidence if matches else 0.0, usage=usage,
                     _deltas=self.model.stream(question, history, usage, system_prompt=system))
