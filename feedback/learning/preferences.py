"""Which labelled completions a run's preference stage learns from, and which it keeps to judge it.

`select_labels` takes the store's usable labels (not excluded on the way in; a correction's pair
only while the correction is approved) and:
- `heldout`: leaves out labels whose prompt is in the held-out exam (as for records);
- `untrusted_cap`: counts an untrusted analyst's labels only within `max_author_share` of the
  stage's labels (newest kept), as the author cap does for records: trusted analysts' and
  imported labels always count, and one untrusted person cannot steer the model alone;
- splits the rest once, by content, into a training share and a held-out share (every
  `HELDOUT_EVERY`-th completion, the same in every run, so a held-out label never trains): the gate
  compares candidate and active on the held-out share.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from secbot.feedback.learning.curation import author_cap
from secbot.feedback.memory.matching import normalise_question
from secbot.feedback.store.entities import PreferenceLabel
from secbot.model.training.record_formats import Labelled

HELDOUT_EVERY = 5  # one completion in five judges the stage, never trains


@dataclass
class LabelSelection:
    train: list[PreferenceLabel]
    heldout: list[PreferenceLabel]
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> labels left out
    capped_authors: dict[str, int] = field(default_factory=dict)

    def examples(self, which: str) -> list[Labelled]:
        return [label.as_labelled() for label in getattr(self, which)]

    def summary(self) -> dict:
        def split(labels):
            return {"desirable": sum(x.desirable for x in labels), "undesirable": sum(not x.desirable for x in labels)}
        return {"used": len(self.train), "held_out": len(self.heldout), "train": split(self.train),
                "heldout_split": split(self.heldout), "excluded": dict(self.excluded)}


def is_heldout(label: PreferenceLabel) -> bool:
    """By the completion's content (prompt, history, completion), whoever labelled it."""
    key = json.dumps([label.prompt, [list(t) for t in label.history], label.completion], ensure_ascii=False)
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % HELDOUT_EVERY == 0


def select_labels(usable: Sequence[PreferenceLabel], heldout_prompts: Iterable[str], max_author_share: float,
                  excluded_in_store: dict[str, int] | None = None) -> LabelSelection:
    exam = {normalise_question(p) for p in heldout_prompts}
    excluded: Counter = Counter(excluded_in_store or {})
    eligible = []
    for label in usable:
        if normalise_question(label.prompt) in exam:
            excluded["heldout"] += 1
        else:
            eligible.append(label)
    untrusted = [x for x in eligible if not x.trusted]
    counts = Counter(x.author or "unknown" for x in untrusted)
    cap = author_cap(counts, len(eligible) - len(untrusted), max_author_share)
    kept: Counter = Counter()
    dropped: dict[str, int] = defaultdict(int)
    dropped_ids = set()
    for label in sorted(untrusted, key=lambda x: x.id, reverse=True):  # newest first
        author = label.author or "unknown"
        if kept[author] < cap:
            kept[author] += 1
        else:
            dropped[author] += 1
            dropped_ids.add(label.id)
    if dropped_ids:
        excluded["untrusted_cap"] = len(dropped_ids)
    chosen = [x for x in eligible if x.id not in dropped_ids]
    return LabelSelection(train=[x for x in chosen if not is_heldout(x)], heldout=[x for x in chosen if is_heldout(x)],
                          excluded={k: v for k, v in excluded.items() if v}, capped_authors=dict(dropped))
