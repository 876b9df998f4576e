"""Slack event ids already handled, so Slack's retries are answered once (across processes and
restarts too); old ids are pruned on a schedule. Also who was greeted in the Messages tab."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from secbot.feedback.store.db import Database
from secbot.feedback.store.schema import EventRow, GreetingRow, utcnow

KEEP_EVENTS = timedelta(days=2)  # Slack retries within minutes; two days is ample


class Events:
    def __init__(self, db: Database):
        self.db = db

    def claim(self, event_id: str) -> bool:
        """True the first time an event id is seen, across processes and restarts."""
        return self._first(EventRow(event_id=event_id))

    def first_greeting(self, user: str) -> bool:
        """True the first time it is asked for `user` (across processes and restarts)."""
        return self._first(GreetingRow(user_id=user))

    def _first(self, row) -> bool:
        """Insert `row` unless its key is there already; True when this call inserted it."""
        with self.db.session() as s:
            try:
                with s.begin_nested():
                    s.add(row)
                return True
            except IntegrityError:
                return False

    def prune(self, older_than: timedelta = KEEP_EVENTS) -> int:
        """Forget event ids older than `older_than`; returns how many."""
        with self.db.session() as s:
            return s.execute(delete(EventRow).where(EventRow.received_at < utcnow() - older_than)).rowcount
