"""Wiring for the Slack bot process: store, model on the active version, learning loop, the app,
and what it does in the background (reports, following the model, forgetting old event ids)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from slack_bolt import App

from secbot.bot import configure
from secbot.bot.app import create_app, web_client
from secbot.bot.reporting import SlackReporter
from secbot.bot.settings import Settings
from secbot.feedback.loop import LearningLoop, follow_active_version, serve_active
from secbot.feedback.periodic import every
from secbot.feedback.store import Store
from secbot.model.client import InProcessClient, ModelClient

log = logging.getLogger(__name__)
PRUNE_EVENTS_EVERY = 6 * 3600.0


@dataclass
class BotRuntime:
    settings: Settings
    store: Store
    model: ModelClient
    loop: LearningLoop
    app: App


def build_runtime(settings: Settings, *, http_mode: bool) -> BotRuntime:
    """Store, model on the active version, learning loop (and its schedule), the Slack app."""
    store = configure.open_store(settings)
    model = configure.model_client(settings)
    if isinstance(model, InProcessClient):
        log.warning("serving %s", serve_active(store, model))
        follow_active_version(store, model)  # promotions made by a training worker
    # A model server is told to switch by whichever process changes the active version; each
    # answer says which version produced it, so this process never switches it on its own.
    reporter = SlackReporter(web_client(settings), store, settings.admin_channel)
    loop = LearningLoop(store, configure.loop_config(settings), model, reporter, training=settings.training,
                        schedule=configure.schedule(settings))
    app = create_app(settings, store, model, loop=loop, http_mode=http_mode)
    if settings.scheduler:
        loop.start_schedule()
    reporter.start()
    every(PRUNE_EVENTS_EVERY, store.events.prune, "secbot-prune-events")
    store.memory.warm()
    # Questions a stopped process left unanswered are finished in the background, not before serving.
    threading.Thread(target=app.secbot.answerer.recover, name="secbot-recover", daemon=True).start()
    return BotRuntime(settings, store, model, loop, app)
