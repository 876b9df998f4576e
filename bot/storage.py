"""The feedback store as the bot and the command line open it: from settings, migrated."""

from __future__ import annotations

from secbot.bot.settings import Settings
from secbot.feedback.store import Store


def open_store(settings: Settings) -> Store:
    return Store(settings.effective_database_url, trusted_analysts=settings.trusted_analysts)
