"""The Slack app: listeners registered in one place, each about its one event.

Events are acknowledged before their listener runs (bolt's default), so neither generation nor
the database sits on the ack path. Each event listener first claims the event id in the
database, so Slack's retries are answered once, also across a restart or a second process.
"""

from __future__ import annotations

import json
import logging
import re

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from secbot.bot import configure
from secbot.bot.admin import AdminCommands, LoopControl
from secbot.bot.answering import FAILED, Answerer, new_error_id
from secbot.bot.settings import Settings
from secbot.bot.slack_views import (SECTION_LIMIT, CORRECTION_INPUT, CORRECTION_MODAL, CORRECTION_SHORTCUT, FEEDBACK_DOWN,
                             FEEDBACK_UP, OPEN_CORRECTION, REVIEW_APPROVE, REVIEW_REJECT,
                             correction_modal, correction_offer_blocks, home_view)
from secbot.feedback.entities import FeedbackKind, FeedbackSource
from secbot.feedback.errors import StoreError
from secbot.feedback.store import Store
from secbot.model.client import ModelClient

log = logging.getLogger(__name__)

THUMBS_UP = {"+1", "thumbsup"}
THUMBS_DOWN = {"-1", "thumbsdown"}
MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


class SettingsError(Exception):
    """Slack settings are missing for the chosen mode."""


class SecbotApp(App):
    """Bolt's App, except that a payload bolt itself cannot parse gets a 400, not an exception."""

    def handle_raw(self, body: str, headers: dict, query: str = "") -> BoltResponse:
        """Dispatch a raw HTTP request as Slack sent it (the HTTP server's entry point)."""
        try:
            request = BoltRequest(body=body, query=query, headers=headers)
        except ValueError:  # bolt parses the body up front: broken JSON or form data
            log.warning("malformed request body rejected")
            return BoltResponse(status=400, body="malformed payload")
        return self.dispatch(request)

    def dispatch(self, req):
        try:
            return super().dispatch(req)
        except Exception:
            log.warning("malformed %s payload rejected", type(req.body).__name__, exc_info=True)
            return BoltResponse(status=400, body="malformed payload")


def web_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL honoured, rate limits and dropped connections retried."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5),
                                     ConnectionErrorRetryHandler(max_retry_count=2)])


def create_app(settings: Settings, store: Store, model: ModelClient, *,
               loop: LoopControl | None = None, http_mode: bool = True,
               update_interval: float = 1.0, split_at: int = SECTION_LIMIT) -> App:
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
    intake = configure.intake(settings, store)
    answerer = Answerer(client, intake, configure.responder(settings, store, model), interval=update_interval,
                        timeout=settings.answer_timeout, limit=split_at)
    admin = AdminCommands(store, settings.admins, loop)

    def first_delivery(body: dict) -> bool:
        """Claim the event id in the database: Slack's retries and duplicates are answered once,
        across processes and restarts. Done in the listener, after the ack, so the ack never
        waits on the database."""
        event_id = body.get("event_id")
        if event_id and not store.events.claim(event_id):
            log.info("duplicate delivery of %s ignored", event_id)
            return False
        return True

    @app.error
    def on_error(error, body):
        error_id = new_error_id()
        log.error("unhandled error %s for %s payload", error_id,
                  body.get("type") if isinstance(body, dict) else "unknown", exc_info=error)

    # -- questions -----------------------------------------------------------------------------
    def answer(event: dict) -> None:
        channel = event["channel"]
        thread_ts = event.get("thread_ts") or event["ts"]
        question = MENTION.sub("", event.get("text", "")).strip()
        if not question:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                    text="Ask me a security question, e.g. _What is lateral movement?_")
            return
        try:
            answerer.answer(channel=channel, thread_ts=thread_ts, question=question,
                            asker=event.get("user"), question_ts=event["ts"])
        except Exception:  # the store or Slack failed outside the model call
            error_id = new_error_id()
            log.exception("could not answer (error id %s)", error_id)
            client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                    text=FAILED.format(error_id=error_id))

    @app.event("app_mention")
    def on_mention(event, body):
        if not event.get("bot_id") and first_delivery(body):
            answer(event)

    @app.event("message")
    def on_message(event, body, context):
        if event.get("subtype") or event.get("bot_id"):
            return  # edits (message_changed), joins, other bots, our own posts
        if not first_delivery(body):
            return
        if f"<@{context.bot_user_id}>" in event.get("text", ""):
            return  # app_mention answers it
        if event.get("channel_type") == "im":
            answer(event)
        elif (settings.answer_thread_replies and event.get("thread_ts")
              and store.conversations.thread_known(event["channel"], event["thread_ts"])):
            answer(event)

    # -- feedback ------------------------------------------------------------------------------
    def thumbs(turn_id: int, user: str, up: bool, source: FeedbackSource) -> None:
        kind = FeedbackKind.THUMBS_UP if up else FeedbackKind.THUMBS_DOWN
        if store.conversations.record_feedback(turn_id, user, kind, source) and up:
            intake.thumbs_up(turn_id, user)

    @app.event("reaction_added")
    def on_reaction(event, body):
        item = event.get("item") or {}
        if item.get("type") != "message" or not first_delivery(body):
            return
        turn = store.conversations.turn_for_message(item["channel"], item["ts"])
        if turn is None:
            return
        reaction, user = event["reaction"].split("::")[0], event["user"]
        if reaction in THUMBS_UP | THUMBS_DOWN:
            thumbs(turn.id, user, reaction in THUMBS_UP, FeedbackSource.REACTION)
        elif reaction == settings.correction_reaction:
            store.conversations.record_feedback(turn.id, user, FeedbackKind.CORRECTION_REQUESTED,
                                                FeedbackSource.REACTION)
            # Reactions carry no trigger_id, so offer a button that can open the modal.
            client.chat_postEphemeral(channel=item["channel"], user=user, thread_ts=item["ts"],
                                      text="Correct this answer", blocks=correction_offer_blocks(turn.id))

    @app.action(FEEDBACK_UP)
    @app.action(FEEDBACK_DOWN)
    def on_feedback_button(ack, body, action, respond):
        ack()
        thumbs(int(action["value"]), body["user"]["id"], action["action_id"] == FEEDBACK_UP,
               FeedbackSource.BUTTON)
        respond(text="Thanks, noted.", response_type="ephemeral", replace_original=False)

    def open_correction(trigger_id: str, turn_id: int, channel: str) -> None:
        turn = store.conversations.get_turn(turn_id)
        if turn is None:
            return
        client.views_open(trigger_id=trigger_id,
                          view=correction_modal(turn.id, channel, turn.question, turn.answer or ""))

    @app.action(OPEN_CORRECTION)
    def on_open_correction(ack, body, action):
        ack()
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        open_correction(body["trigger_id"], int(action["value"]), channel)

    @app.shortcut(CORRECTION_SHORTCUT)
    def on_correction_shortcut(ack, body):
        ack()
        channel = body["channel"]["id"]
        turn = store.conversations.turn_for_message(channel, body["message"]["ts"])
        if turn is None:
            client.views_open(trigger_id=body["trigger_id"], view={
                "type": "modal", "title": {"type": "plain_text", "text": "Correct this answer"},
                "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                            "text": "That message is not one of secbot's answers."}}]})
            return
        store.conversations.record_feedback(turn.id, body["user"]["id"], FeedbackKind.CORRECTION_REQUESTED,
                                            FeedbackSource.SHORTCUT)
        open_correction(body["trigger_id"], turn.id, channel)

    @app.view(CORRECTION_MODAL)
    def on_correction_submitted(ack, body, view):
        text = (view["state"]["values"][CORRECTION_INPUT][CORRECTION_INPUT].get("value") or "").strip()
        if not text:
            ack(response_action="errors", errors={CORRECTION_INPUT: "Write the answer secbot should give."})
            return
        ack()
        meta = json.loads(view["private_metadata"])
        user = body["user"]["id"]
        submission = intake.correction(meta["turn_id"], user, text)
        client.chat_postEphemeral(channel=meta["channel"], user=user, text=submission.message())

    # -- admin -----------------------------------------------------------------------------------
    @app.command("/secbot")
    def on_command(ack, command, respond):
        ack()
        user, text = command["user_id"], command.get("text", "").strip()
        if text.split()[:1] == ["export"] and admin.is_admin(user):
            path, count = admin.export_file()
            client.files_upload_v2(channel=command["channel_id"], file=str(path), filename=path.name,
                                   title="secbot approved training records",
                                   initial_comment=f"{count} approved record(s), THUDM JSON lines.")
            return
        respond(response_type="ephemeral", **admin.run(text, user))

    @app.action(REVIEW_APPROVE)
    @app.action(REVIEW_REJECT)
    def on_review(ack, body, action, respond):
        ack()
        user = body["user"]["id"]
        if not admin.is_admin(user):
            respond(text="Only secbot admins can review records.", response_type="ephemeral",
                    replace_original=False)
            return
        try:
            record = store.records.review(int(action["value"]), user,
                                          approve=action["action_id"] == REVIEW_APPROVE)
        except StoreError as exc:
            respond(text=str(exc), response_type="ephemeral", replace_original=False)
            return
        respond(text=f"Record #{record.id} {record.status.value} by <@{user}>.", replace_original=False)

    @app.event("app_home_opened")
    def on_home(event):
        user = event["user"]
        if admin.is_admin(user):
            view = home_view(admin.status_text(), admin.review())
        else:
            view = home_view("Mention me in a channel or send me a DM with a security question. "
                             "React :+1: to good answers and :pencil2: to correct bad ones.", None)
        client.views_publish(user_id=user, view=view)

    @app.event("reaction_removed")
    def ignore_removed_reactions():
        pass

    # Registered last: any other event is acknowledged and dropped, so Slack does not retry it.
    @app.event(re.compile(".*"))
    def ignore_other_events():
        pass

    return app
