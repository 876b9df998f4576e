"""What the listeners work with, handed to them through bolt's context (`context["secbot"]`)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def silenced(self, team: str | None) -> str | None:
        """Why nothing may be posted in workspace `team` (its token was revoked, or it uninstalled
        secbot), or None."""
        try:
            return self.store.events.revoked(team)
        except Exception:  # the store is down: posting is still better than silence
            return None

    def allowed(self, user: str | None, channel: str | None) -> str | None:
        """Why `user` may not use secbot in `channel` (None when they may)."""
        s = self.settings
        if s.slack.channels and channel and not channel.startswith("D") and channel not in s.slack.channels:
            return ("I only answer in the security team's channels. Ask me in one of them, or in a DM.")
        if s.slack.allowed_usergroup and user not in self.directory.members(s.slack.allowed_usergroup):
            return "Sorry, secbot is only open to the security team. Ask an admin to add you to its user group."
        return None
