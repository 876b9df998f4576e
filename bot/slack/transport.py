"""Running the Slack app: Socket Mode (no public URL needed) or the HTTP Events API."""

from __future__ import annotations

import logging

from slack_bolt import App

from secbot.bot.slack.app import SecbotApp

log = logging.getLogger(__name__)


def serve_socket_mode(app: App, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    SocketModeHandler(app, app_token).start()


def asgi_app(app: SecbotApp):
    """The bolt app as an ASGI application answering on /slack/events."""
    from slack_bolt.adapter.asgi import SlackRequestHandler

    class Handler(SlackRequestHandler):
        async def dispatch(self, request):
            body = await request.get_raw_body()
            return self.app.handle_raw(body, request.get_headers(), request.query_string)

    return Handler(app, path="/slack/events")


def serve_http(app: App, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(asgi_app(app), host=host, port=port, log_level="warning", access_log=False)
