"""A value slot: where a value sits in a text, what kind of position found it, and what its field says; and
how a value found in a slot is judged."""

from __future__ import annotations

import re
from dataclasses import dataclass

from secbot.feedback.intake.redaction import evidence
from secbot.feedback.intake.redaction.names import Field, classify


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


# A path of names whose last part names a credential, or of three lower-case names: a secret store's path,
# not the secret (`prod/db/password`, `airflow/connections/metadata_db`).
SECRET_PATH = re.compile(r"(?:[\w.-]+/)+[\w.-]+(?:#[\w.-]+)?")
STORE_PATH = re.compile(r"[a-z][a-z0-9_.-]*(?:/[a-z][a-z0-9_.-]*){2,}")


def judge(text: str, start: int, end: int, quoted: bool, field: Field, kind: str) -> Slot | None:
    """A slot when the value in it is a secret for a field of this kind."""
    value = text[start:end]
    if field is Field.IDENTIFIER:
        return Slot(start, end, kind, field)
    if field not in (Field.CREDENTIAL, Field.WEAK) or len(value.strip()) < 3:
        return None
    if evidence.is_reference(value, quoted) or evidence.is_not_secret(value.strip(), in_slot=True):
        return None
    if SECRET_PATH.fullmatch(value) and classify(re.split(r"[/#]", value)[-1]) in (Field.CREDENTIAL, Field.WEAK) \
            or STORE_PATH.fullmatch(value):
        return None  # where a secret is kept: `secret=prod/db/password`, `kv/ci/deploy#token`
    if not quoted and evidence.function_word(value.strip().lower()):
        return None  # a sentence after a name and a colon (`passwd: all authentication tokens updated`)
    if evidence.yara_modifiers_at(text, end + 1):
        return None  # a YARA string definition: `$pass = "password" nocase wide`
    if field is Field.WEAK and not evidence.looks_random(value):
        return None
    return Slot(start, end, kind, field)
