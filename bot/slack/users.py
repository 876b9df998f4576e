"""What secbot looks up in Slack: users' display names (`users.info`), membership of user groups
(`usergroups.users.list`) and links to messages (`chat.getPermalink`), each cached (names and
groups for a while, links for good) so a busy channel costs few calls."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class Directory:
    def __init__(self, client: WebClient, ttl: float = 3600.0):
        self.client, self.ttl = client, ttl
        self._names: dict[str, tuple[float, str]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._links: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def name(self, user: str | None) -> str:
        """The user's display name (or real name, or their id when Slack will not say)."""
        if not user:
            return "someone"
        with self._lock:
            cached = self._names.get(user)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        try:
            profile = self.client.users_info(user=user)["user"]
            found = (profile.get("profile", {}).get("display_name") or profile.get("real_name")
                     or profile.get("name") or user)
        except Exception as exc:  # Slack refused, or could not be reached: the id still names them
            log.info("no name for %s: %s", user, exc)
            found = user
        with self._lock:
            self._names[user] = (time.monotonic(), found)
        return found

    def members(self, usergroup: str) -> frozenset[str]:
        """User ids in a user group (empty when Slack will not say: access is then refused)."""
        with self._lock:
            cached = self._groups.get(usergroup)
        if cached and time.monotonic() - cached[0] < min(self.ttl, 300.0):
            return cached[1]
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=usergroup)["users"])
        except (SlackApiError, KeyError, TypeError) as exc:
            log.warning("cannot read user group %s: %s", usergroup, exc)
            users = frozenset()
        with self._lock:
            self._groups[usergroup] = (time.monotonic(), users)
        return users

    def permalink(self, channel: str | None, ts: str | None) -> str | None:
        """A link to the message `ts` in `channel` (None when Slack will not give one)."""
        if not channel or not ts:
            return None
        with self._lock:
            cached = self._links.get((channel, ts))
        if cached:
            return cached
        try:
            link = self.client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
        except (SlackApiError, KeyError, TypeError) as exc:
            log.info("no link to %s/%s: %s", channel, ts, exc)
            return None
        with self._lock:
            self._links[(channel, ts)] = link
        return link
