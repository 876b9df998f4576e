"""The answering policy, one code path for the Slack bot, `secbot chat` and the demo.

- A confident team-memory match: the team's approved answer, with its provenance, no model call.
- A borderline match, when `MemoryPolicy.confirm` is on (a real chat model): the model is asked
  one short yes/no question, "do these two questions ask the same thing?"; yes makes it a
  confident match.
- A weaker match: the model answers with the best few approved records in its system prompt as
  reference (a real model uses them; the tiny reference model cannot), and the reply lists them.
- No match: the model alone.

A thread's earlier questions are the context when ranking, so a follow-up ("how do I stop it?")
matches the record written for that thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from secbot.feedback.intake.submissions import AUTO_APPROVED
from secbot.feedback.memory.matching import CONFIDENT, REFERENCE, Match
from secbot.feedback.memory.semantic import worth_referencing
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
    confirm: bool = False  # ask the model to confirm a borderline match (one short yes/no generation)


CONFIRM_SYSTEM = ("You compare two questions asked of a security team. Answer with one word: yes if they ask "
                  "the same thing (the same answer would serve both), otherwise no.")
CONFIRM_CHARS = 24  # of the model's reply read before deciding

@dataclass
class Reply:
    """An answer being given: its text arrives through `deltas()`."""

    kind: str  # "memory", "model+references" or "model"
    record: TrainingRecord | None = None  # the team record that answers ("memory")
    confidence: float = 0.0
    confirmed: bool = False  # a borderline match the model confirmed (`MemoryPolicy.confirm`)
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
            # A reference needs either signal: the combined confidence is tuned for answering alone,
            # and a record whose words or meaning match well still helps the model.
            if not worth_referencing(match, self.policy.reference):
                continue
            record = self.records.get(match.record_id)
            if record is not None:
                found.append((match, record))
        if len(found) > 1 and found[0][0].confidence < self.policy.confident and found[0][0].fused is not None:
            found.sort(key=lambda mr: -mr[0].fused)  # references: by rank fusion of both signals
        return found[: self.policy.max_references]

    def same_question(self, question: str, stored: str) -> bool:
        """The model's yes/no: do `question` and `stored` ask the same thing? Reads only the first
        few characters of its reply and stops the generation there."""
        text, usage = "", Usage()
        deltas = self.model.stream(f"Question A: {stored}\nQuestion B: {question}\nSame question? (yes/no)", [],
                                   usage, system_prompt=CONFIRM_SYSTEM)
        try:
            for delta in deltas:
                text += delta
                word = text.strip()
                if len(text) >= CONFIRM_CHARS or len(word) >= 3 or re.match(r"[^\W\d_]+\W", word):
                    break  # "yes", "no.", "是"… enough to decide
        finally:
            close = getattr(deltas, "close", None)
            if close:
                close()
        return text.strip().lower().lstrip("*\"'“ ").startswith(("yes", "是", "same"))

    def reply(self, question: str, history: Sequence[Sequence[str]] = ()) -> Reply:
        matches = self.lookup(question, history)
        if matches and matches[0][0].confidence >= self.policy.confident:
            match, record = matches[0]
            return Reply("memory", record=record, confidence=match.confidence)
        if matches and self.policy.confirm and not history and self.same_question(question, matches[0][1].prompt):
            match, record = matches[0]
            return Reply("memory", record=record, confidence=match.confidence, confirmed=True)
        usage = Usage()
        references = [record for _, record in matches]
        system = references_prompt(self.system_prompt, references) if references else None
        return Reply("model+references" if references else "model", references=references,
                     confidence=matches[0][0].confidence if matches else 0.0, usage=usage,
                     _deltas=self.model.stream(question, history, usage, system_prompt=system))
