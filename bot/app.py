"""The Slack app: bolt's App with secbot's listeners, its middleware and the assistant panel.

Events are acknowledged before their listener runs (bolt's default), so neither the model nor
most of the database sits on the ack path: the only work before the ack is the once-only claim
of an event secbot acts on (`bot.middleware`).
"""

from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from secbot.bot import configure
from secbot.bot.admin import AdminCommands, LoopControl
from secbot.bot.answering import Answerer
from secbot.bot.assistant import build_assistant
from secbot.bot.deps import Deps
from secbot.bot.listeners import register_listeners
from secbot.bot.rendering import MESSAGE_LIMIT
from secbot.bot.settings import Settings
from secbot.bot.users import Directory
from secbot.feedback.store import Store
from secbot.model.client import ModelClient

log = logging.getLogger(__name__)


class SettingsError(Exception):
    """Slack settings are missing for the chosen mode."""


class SecbotApp(App):
    """Bolt's App, except that a payload bolt itself cannot parse gets a 400, not an exception."""

    def handle_raw(self, body: str, headers: dict, query: str = "") -> BoltResponse:
        """Dispatch a raw HTTP request as Slack sent it (the HTTP server's entry point)."""
        stamp = {k.lower(): v for k, v in headers.items()}.get("x-slack-request-timestamp")
        stamp = stamp[0] if isinstance(stamp, (list, tuple)) and stamp else stamp
        if stamp is not None and not str(stamp).strip().isdigit():
            log.warning("request with a non-numeric timestamp header rejected")
            return BoltResponse(status=401, body="invalid request")  # not something Slack signed
        try:
            request = BoltRequest(body=body, query=query, headers=headers)
        except ValueError:  # bolt parses the body up front: broken JSON or form data
            log.warning("malformed request body rejected")
            return BoltResponse(status=400, body="malformed payload")
        return self.dispatch(request)

    def dispatch(self, req):
        try:
            response = super().dispatch(req)
        except Exception:
            log.warning("malformed %s payload rejected", type(req.body).__name__, exc_info=True)
            return BoltResponse(status=400, body="malformed payload")
        if response.status == 404 and not any(k in req.body for k in ("type", "command")):
            return BoltResponse(status=400, body="not a Slack request")
        return response


def web_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL honoured, rate limits and dropped connections retried."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5),
                                     ConnectionErrorRetryHandler(max_retry_count=2)])


def create_app(settings: Settings, store: Store, model: ModelClient, *, loop: LoopControl | None = None,
               http_mode: bool = True, update_interval: float = 1.0, split_at: int = MESSAGE_LIMIT) -> SecbotApp:
    """The bolt app with every listener; `http_mode` requires and checks the signing secret."""
    if not settings.slack_bot_token:
        raise SettingsError("SLACK_BOT_TOKEN is not set: create the app from deploy/manifest.yml "
                            "and export its bot token (xoxb-...).")
    if http_mode and not settings.slack_signing_secret:
        raise SettingsError("SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request "
                            "with it (Basic Information → App Credentials).")
    client = web_client(settings)
    app = SecbotApp(client=client, process_before_response=False,
                    signing_secret=settings.slack_signing_secret.get_secret_value() if http_mode else None,
                    request_verification_enabled=http_mode)
    directory = Directory(client)
    intake = configure.intake(settings, store)
    answerer = Answerer(client, intake, configure.responder(settings, store, model), name_of=directory.name,
                        interval=update_interval, timeout=settings.answer_timeout, limit=split_at,
                        streaming=settings.streaming)
    deps = Deps(settings, client, store, intake, answerer,
                AdminCommands(store, settings.admins, loop, directory.name), directory)
    register_listeners(app, deps)  # first: its middleware hands every listener its dependencies
    app.assistant(build_assistant())
    app.secbot = deps
    return app
