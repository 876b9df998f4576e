"""Wiring for a serving process: store, model client on the active version, the Slack app."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt import App

from bot.admin import LoopControl
from bot.app import create_app
from bot.model_client import InProcessClient, ModelClient, client_from
from bot.settings import Settings
from bot.storage import open_store
from feedback.store import Store

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
    model.version_id = active.id if active else None


def build_runtime(settings: Settings, *, http_mode: bool, loop: LoopControl | None = None) -> BotRuntime:
    store = open_store(settings)
    model = client_from(settings)
    serve_active_version(store, model)
    app = create_app(settings, store, model, loop=loop, http_mode=http_mode)
    return BotRuntime(settings, store, model, app)
