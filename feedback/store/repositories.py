"""The feedback store: one database, five repositories by aggregate.

    store.conversations  threads, turns, answer messages, feedback   (feedback.store.conversations)
    store.records        training records, snapshots, team memory    (feedback.store.records)
    store.labels         labelled completions (👍/👎, pairs)          (feedback.store.labels)
    store.runs           training runs, model versions, locks        (feedback.store.runs)
    store.events         Slack event ids already handled             (feedback.store.events)

Repositories return plain dataclasses (`feedback.store.entities`). What enters the store is redacted
and given its review status by `feedback.intake.submissions`; the repositories store what they are given.
"""

from __future__ import annotations

import logging

from secbot.feedback.store.conversations import Conversations
from secbot.feedback.store.db import Database
from secbot.feedback.store.events import Events
from secbot.feedback.store.labels import Labels
from secbot.feedback.store.memory_index import TeamMemory
from secbot.feedback.store.records import Records
from secbot.feedback.store.runs import Runs

log = logging.getLogger(__name__)


class Store:
    """The store on any SQLAlchemy URL; `migrate=True` brings the schema up to date first."""

    def __init__(self, url: str, *, migrate: bool = True, embedder=None, calibration_questions=()):
        """`embedder` (see `secbot.model.runtime.embeddings`): team memory also matches by meaning, the
        embedder calibrated on `calibration_questions`."""
        self.db = Database(url)
        self.db.check()
        if migrate:
            from secbot.feedback.store.migrate import upgrade

            upgrade(self.db)
        self.conversations = Conversations(self.db)
        self.records = Records(self.db, TeamMemory(self.db, embedder, calibration_questions))
        self.labels = Labels(self.db)
        self.runs = Runs(self.db)
        self.events = Events(self.db)
        self.memory = self.records.memory
        if migrate and self.records.memory_needs_rebuild():
            log.warning("team memory indexed %d approved record(s) from before it existed",
                        self.records.rebuild_memory())
        if embedder is not None:
            if self.memory.check_vectors():
                log.error(self.memory.semantic_problem)
            elif migrate and (embedded := self.memory.embed_missing()):
                log.warning("team memory embedded %d record(s) indexed before semantic matching", embedded)

    @property
    def url(self) -> str:
        return self.db.url

    def close(self) -> None:
        self.db.close()
