"""What the listeners work with, handed to them through bolt's context (`context["secbot"]`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from slack_sdk import WebClient

from secbot.bot.settings import Settings
from secbot.bot.slack.admin import AdminCommands
from secbot.bot.slack.delivery import Answerer
from secbot.bot.slack.home import HomeTab
from secbot.bot.slack.review import ReviewQueue
from secbot.bot.slack.users import Directory
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.store.repositories import Store


@dataclass
class Deps:
    settings: Settings
    client: WebClient
    store: Store
    intake: Intake
    answerer: Answerer
    admin: AdminCommands
    directory: Directory
    review: ReviewQueue
    home: HomeTab
    silence_ttl: float = 30.0  # seconds a workspace's revoked-or-not is remembered (every request asks)
    _silence: dict = field(default_factory=dict, repr=False)

    def silenced(self, team: str | None) -> str | None:
        """Why nothing may be posted in workspace `team` (its token was revoked, or it uninstalled
        secbot), or None. Read from the store at most every `silence_ttl` seconds per workspace."""
        cached = self._silence.get(team)
        if cached and time.monotonic() - cached[0] < self.silence_ttl:
            return cached[1]
        try:
            reason = self.store.events.revoked(team)
        except Exception:  # the store is down: posting is still better than silence
            return None
        self._silence[team] = (time.monotonic(), reason)
        return reason

    def silence(self, team: str, reason: str) -> None:
        """Record that `team` revoked secbot (`reason`: the event), in the store and at once here."""
        self.store.events.revoke(team, reason)
        self._silence[team] = (time.monotonic(), reason)

    def allowed(self, user: str | None, channel: str | None) -> str | None:
        """Why `user` may not use secbot in `channel` (None when they may)."""
        s = self.settings
        if s.slack.channels and channel and not channel.startswith("D") and channel not in s.slack.channels:
            return ("I only answer in the security team's channels. Ask me in one of them, or in a DM.")
        if s.slack.allowed_usergroup and user not in self.directory.members(s.slack.allowed_usergroup):
            return "Sorry, secbot is only open to the security team. Ask an admin to add you to its user group."
        return None
