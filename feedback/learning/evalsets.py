"""The built-in data sets of the nightly run, written for this project (English and Chinese).

- `general.jsonl`: general security Q&A mixed into training (replay), so a run on a handful of
  new corrections does not erase what the model knew.
- `heldout.jsonl`: 110 general security Q&A that are never trained (snapshots exclude their
  prompts); the gate compares candidate and active on them.
- `identity.json`: identity phrasings, trained and held out (`feedback.intake.identity`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from secbot.model.training.record_formats import Record, read_records


@lru_cache(maxsize=None)
def _builtin(name: str) -> tuple[Record, ...]:
    return tuple(read_records(Path(str(files("secbot.feedback.learning").joinpath(name)))).records)


def general_set() -> list[Record]:
    return list(_builtin("general.jsonl"))


def builtin_heldout() -> list[Record]:
    return list(_builtin("heldout.jsonl"))


def calibration_questions() -> list[str]:
    """The built-in questions team memory calibrates an embedding model on (each asks something
    different: their cosines are the model's null distribution; `feedback.memory.semantic`)."""
    return list(dict.fromkeys(r.prompt for r in general_set() + builtin_heldout()))


def heldout_set(extra_file: str | Path | None = None) -> list[Record]:
    """The built-in held-out set, plus the team's own file when configured."""
    records = builtin_heldout()
    if extra_file:
        records += read_records(extra_file).records
    return records
