"""What a nightly run may learn from, and in which mix.

`curate` decides which approved records enter a snapshot, naming every exclusion:
- `heldout`: the prompt is in the held-out exam (the model must never train on its exam);
- `identity`: the record answers an identity question (the configured identity always wins);
- `impostor`: its answer speaks as another assistant and no second person approved it;
- `author_cap`: records nobody but their author vouched for (auto-approved, or approved by their
  own author) beyond `max_author_share` of the snapshot, newest kept. The cap holds for the
  snapshot as frozen: no author ends above the share. Imported records count as reviewed (an
  import is an admin's act), and so do records a second person approved: a lone author's work
  is never starved, only held until someone else looks. `capped_authors` says who was capped.

`training_mix` turns a snapshot into the run's training set: the new records, replay of earlier
approved records and of the built-in general set (so new records do not erase old knowledge),
and the identity set, twice. The new records are repeated until they are about half of the
examples (at most `MAX_REPEAT` times). Measured on the tiny model (8 corrections, 8 general and
44 identity records): unrepeated, 1/8 corrections were reproduced after 300 steps; with new x6
and identity x2 after 400 steps, 8/8 corrections and 44/44 trained identity phrasings.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from secbot.feedback.intake.identity import IdentityGuard
from secbot.feedback.intake.submissions import AUTO_APPROVED
from secbot.feedback.memory.matching import normalise_question, question_key
from secbot.feedback.store.entities import RecordFlag, RecordSource, TrainingRecord
from secbot.model.training.record_formats import Record


@dataclass
class Curated:
    kept: list[TrainingRecord]
    excluded: dict[str, list[int]] = field(default_factory=dict)  # reason -> record ids
    capped_authors: dict[str, int] = field(default_factory=dict)  # author -> records the cap left out

    def summary(self) -> dict[str, int]:
        return {reason: len(ids) for reason, ids in self.excluded.items()}


def vouched_only_by_author(record: TrainingRecord) -> bool:
    return record.source != RecordSource.IMPORT and record.reviewer in (None, AUTO_APPROVED, record.author)


def author_cap(counts: dict[str, int], reviewed: int, share: float) -> int:
    """The most records any one author may keep so that, after capping, nobody holds more than
    `share` of the snapshot (`reviewed` records, vouched for by someone else, always stay)."""
    if share >= 1 or not counts:
        return max(counts.values(), default=0)
    for cap in range(max(counts.values()), -1, -1):
        if cap <= share * (reviewed + sum(min(n, cap) for n in counts.values())):
            return cap
    return 0


def curate(approved: Sequence[TrainingRecord], heldout_prompts: Iterable[str], guard: IdentityGuard,
           max_author_share: float) -> Curated:
    heldout = {normalise_question(p) for p in heldout_prompts}
    excluded: dict[str, list[int]] = defaultdict(list)
    eligible = []
    for record in approved:
        if normalise_question(record.prompt) in heldout:
            excluded["heldout"].append(record.id)
        elif RecordFlag.IDENTITY in record.flags or guard.is_identity_question(record.prompt):
            excluded[RecordFlag.IDENTITY.value].append(record.id)
        elif RecordFlag.IMPOSTOR in record.flags and vouched_only_by_author(record):
            excluded[RecordFlag.IMPOSTOR.value].append(record.id)
        else:
            eligible.append(record)
    capped = [r for r in eligible if vouched_only_by_author(r)]
    counts = Counter(r.author or "unknown" for r in capped)
    cap = author_cap(counts, len(eligible) - len(capped), max_author_share)
    kept_per_author: Counter = Counter()
    dropped = set()
    for record in sorted(capped, key=lambda r: r.id, reverse=True):  # newest first
        author = record.author or "unknown"
        if kept_per_author[author] < cap:
            kept_per_author[author] += 1
        else:
            dropped.add(record.id)
    if dropped:
        excluded["author_cap"] = sorted(dropped)
    kept = [r for r in eligible if r.id not in dropped]
    capped_authors = Counter(r.author or "unknown" for r in capped if r.id in dropped)
    return Curated(kept, dict(excluded), dict(capped_authors))


MAX_REPEAT = 8
IDENTITY_REPEAT = 2


@dataclass
class Mix:
    train: list[Record]
    new: list[Record]
    replayed: int
    general: int
    identity: int
    repeat: int = 1  # how often each new record appears

    def summary(self) -> dict[str, int]:
        return {"new": len(self.new), "repeat": self.repeat, "replayed": self.replayed, "general": self.general,
                "identity": self.identity, "total": len(self.train)}


def _sample(items: list, n: float, rng: random.Random) -> list:
    n = min(len(items), math.ceil(n))
    return rng.sample(items, n) if n < len(items) else list(items)


def training_mix(snapshot: Sequence[TrainingRecord], new_ids: set[int], general: Sequence[Record],
                 identity: Sequence[Record], *, replay_ratio: float, general_ratio: float,
                 seed: int) -> Mix:
    """New records, plus `replay_ratio` earlier records and `general_ratio` general-set records
    per new record (with no new record: every earlier record), plus every identity record.
    Deterministic for a seed."""
    rng = random.Random(seed)
    new = [r.as_record() for r in snapshot if r.id in new_ids]
    earlier = [r.as_record() for r in snapshot if r.id not in new_ids]
    # A run for labelled completions alone (no new record) replays every earlier record, so the
    # supervised stage still holds what the team taught.
    replay = _sample(earlier, replay_ratio * len(new), rng) if new else list(earlier)
    team_questions = {question_key(r.prompt, r.history) for r in snapshot}
    # Where the team answered a question itself, its answer wins over the general set's.
    general = [r for r in general if question_key(r.prompt, r.history) not in team_questions]
    general_used = _sample(general, general_ratio * (len(new) or len(replay)), rng)
    identity = list(dict.fromkeys(identity))
    others = [r for r in dict.fromkeys(replay + general_used) if r not in set(identity)]
    new = [r for r in dict.fromkeys(new) if r not in set(others + identity)]
    rest = others + identity * IDENTITY_REPEAT
    repeat = max(1, min(MAX_REPEAT, round(len(rest) / len(new)))) if new else 1
    return Mix(new * repeat + rest, new, len(replay), len(general_used), len(identity), repeat)
