"""The Slack app: bolt's App with secbot's listeners, its middleware, the assistant panel and
one error handler.

Events are acknowledged before their listener runs (bolt's default), so neither the model nor
most of the database sits on the ack path: the only work before the ack is the once-only claim
of an event secbot acts on (`bot.slack.middleware`). The components come built
(`bot.configure.slack_app`).
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor

from slack_bolt import App, BoltRequest, BoltResponse

from secbot.bot.slack.assistant import build_assistant
from secbot.bot.slack.deps import Deps
from secbot.bot.slack.listeners import register_listeners

log = logging.getLogger(__name__)


class SecbotApp(App):
    """Bolt's App with an entry point for raw HTTP requests that turns away what Slack never sends."""

    def handle_raw(self, body: str, headers: dict, query: str = "") -> BoltResponse:
        """Dispatch a raw HTTP request as Slack sent it (the HTTP server's entry point)."""
        stamp = {k.lower(): v for k, v in headers.items()}.get("x-slack-request-timestamp")
        stamp = stamp[0] if isinstance(stamp, (list, tuple)) and stamp else stamp
        if stamp is not None and not str(stamp).strip().isdigit():
            log.warning("request with a non-numeric timestamp header rejected")
            return BoltResponse(status=401, body="invalid request")  # not something Slack signed
        try:
            request = BoltRequest(body=body, query=query, headers=headers)
        except (ValueError, AttributeError, TypeError):  # bolt parses the body up front: broken JSON or
            # form data, or JSON that is not an object (`[1, 2, 3]`)
            log.warning("malformed request body rejected")
            return BoltResponse(status=400, body="malformed payload")
        if not isinstance(request.body, dict) or not any(k in request.body for k in ("type", "command")):
            # Every Slack request names its type (events, interactions) or its command.
            response = self.dispatch(request)  # still verified first: an unsigned request gets 401
            return response if response.status in (401, 403) else BoltResponse(status=400, body="not a Slack request")
        try:
            response = self.dispatch(request)  # verified first: only signed requests get this far
        except Exception:  # bolt's error path itself failed on the shape: same answer as below
            log.warning("a signed request of an odd shape could not be handled", exc_info=True)
            response = BoltResponse(status=500, body="")
        if response.status >= 500:
            # Signed, but shaped as Slack never sends (`"text": 12345`, `"actions": []`): bolt's own
            # matching failed on it. Acknowledge, so Slack does not retry it, and ignore it.
            log.warning("a signed %s request of an odd shape was acknowledged and ignored",
                        request.body.get("type") or "command")
            return BoltResponse(status=200, body="")
        return response


def log_error(error: Exception, body: dict, logger: logging.Logger) -> None:
    """bolt's one error handler, for listeners and middleware alike: the log gets the details;
    what the user sees was already said by the listener (an error id, never a traceback)."""
    kind = body.get("type") or body.get("command") if isinstance(body, dict) else None
    log.error("unhandled error handling a %s request", kind or "Slack", exc_info=error)


def create_app(deps: Deps, *, http_mode: bool, listener_executor: Executor | None = None) -> SecbotApp:
    """The bolt app with every listener; `http_mode` verifies every request's signature."""
    secret = deps.settings.slack.signing_secret
    app = SecbotApp(client=deps.client, process_before_response=False, listener_executor=listener_executor,
                    signing_secret=secret.get_secret_value() if http_mode and secret else None,
                    request_verification_enabled=http_mode)
    register_listeners(app, deps)  # first: its middleware hands every listener its dependencies
    app.assistant(build_assistant())
    app.error(log_error)
    return app
