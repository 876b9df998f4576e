"""A value slot: where a value sits in a text, what kind of position found it, and what its field says."""

from __future__ import annotations

from dataclasses import dataclass

from secbot.feedback.intake.redaction.names import Field


@dataclass(frozen=True)
class Slot:
    start: int
    end: int
    kind: str
    field: Field  # CREDENTIAL, WEAK or IDENTIFIER

    @property
    def value(self) -> tuple[int, int]:
        return self.start, self.end


# The marks that close a value given in a sentence or in code quotes: `it's X.`, `(X)`, `"X",`.
VALUE_END = ".,;?)\"'}]”’"
