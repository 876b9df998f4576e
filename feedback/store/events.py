"""Slack event ids already handled, so Slack's retries are answered once (across processes and
restarts too); old ids are pruned on a schedule. Also who was greeted in the Messages tab, and
which workspaces revoked secbot's token or uninstalled it (nothing is posted there)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from secbot.feedback.store.db import Database
from secbot.feedback.store.schema import EventRow, GreetingRow, RevocationRow, utcnow

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

    def revoke(self, team: str, reason: str) -> None:
        """`team` revoked secbot's bot token or uninstalled it (`reason`: the event's type)."""
        if not self._first(RevocationRow(team_id=team, reason=reason)):  # recorded before: now again
            with self.db.session() as s:
                row = s.get(RevocationRow, team)
                row.reason, row.revoked_at = reason, utcnow()

    def revoked(self, team: str | None) -> str | None:
        """Why nothing may be posted in `team` (the event that said so), or None."""
        if not team:
            return None
        with self.db.reading() as s:
            return s.scalar(select(RevocationRow.reason).where(RevocationRow.team_id == team))

    def restore(self, team: str) -> bool:
        """A token for `team` works again (reinstalled); True when it had been revoked."""
        with self.db.session() as s:
            return s.execute(delete(RevocationRow).where(RevocationRow.team_id == team)).rowcount > 0

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
