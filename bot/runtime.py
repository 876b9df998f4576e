"""Wiring for a serving process: store, model client on the active version, the Slack app."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from slack_bolt import App

from secbot.bot.app import create_app
from secbot.bot.model_client import InProcessClient, ModelClient, OpenAIClient, client_from
from secbot.bot.settings import Settings
from secbot.bot.storage import open_store
from secbot.feedback.store import Store

log = logging.getLogger(__name__)


@dataclass
class BotRuntime:
    settings: Settings
    store: Store
    model: ModelClient
    app: App


def serve_active_version(store: Store, model: ModelClient) -> None:
    """Point an in-process model at the active version's adapter (or the bare base)."""
    active = store.active_version()
    if isinstance(model, InProcessClient):
        model.engine.use_adapter(active.adapter_path if active and active.adapter_path else
                                 model.engine.adapter)
    elif isinstance(model, OpenAIClient) and model.follows_versions and active:
        model.activate_adapter(active.adapter_path)
    model.version_id = active.id if active else None


def build_runtime(settings: Settings, *, http_mode: bool) -> BotRuntime:
    """Store, model on the active version, learning loop (and its schedule), the Slack app."""
    from secbot.bot.app import web_client
    from secbot.bot.loop import SlackLoop

    store = open_store(settings)
    model = client_from(settings)
    serve_active_version(store, model)
    loop = SlackLoop(settings, store, model, web_client(settings))
    app = create_app(settings, store, model, loop=loop, http_mode=http_mode)
    if settings.scheduler:
        loop.start_schedule()
    watch_active_version(store, model)
    return BotRuntime(settings, store, model, app)


def watch_active_version(store: Store, model: ModelClient, every: float = 15.0) -> threading.Thread:
    """Follow promotions and rollbacks made by other processes (a scheduler elsewhere)."""
    def watch() -> None:
        while True:
            time.sleep(every)
            try:
                active = store.active_version()
                if (active.id if active else None) != model.version_id:
                    serve_active_version(store, model)
            except Exception:
                log.exception("could not check the active model version")

    thread = threading.Thread(target=watch, name="secbot-version-watch", daemon=True)
    thread.start()
    return thread
