"""Every Slack listener of secbot: small module-level functions, registered in one place
(`register_listeners`). Each gets its dependencies from bolt's context (`context["secbot"]`,
set by `bot.slack.middleware.attach`); events secbot acts on pass the `once` middleware first.
"""

from __future__ import annotations

import json
import logging
import re

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from secbot.bot.slack.delivery import FAILED, new_error_id
from secbot.bot.slack.middleware import THUMBS_UP, attach, question_once, reaction_once
from secbot.bot.slack.views import (
    CORRECTION_INPUT,
    CORRECTION_MODAL,
    CORRECTION_SHORTCUT,
    FEEDBACK,
    GREETING,
    LEGACY_DOWN,
    LEGACY_UP,
    OPEN_CORRECTION,
    REVIEW_APPROVE,
    REVIEW_REJECT,
    REVIEW_REVOKE,
    correction_modal,
    correction_offer_blocks,
    message_modal,
    suggested_prompts,
)
from secbot.feedback.errors import StoreError
from secbot.feedback.store.entities import FeedbackKind, FeedbackSource, Turn

log = logging.getLogger(__name__)
# What these listeners need from Slack; deploy/manifest.yml declares exactly these.
BOT_EVENTS = {"app_mention", "message.channels", "message.groups", "message.im", "message.mpim",
              "reaction_added", "app_home_opened", "assistant_thread_started"}
BOT_SCOPES = {
    "app_mentions:read": "questions that mention secbot",
    "channels:history": "replies in threads secbot answered (public channels)",
    "groups:history": "the same in private channels",
    "im:history": "direct messages and the assistant panel",
    "mpim:history": "group DMs secbot is in",
    "chat:write": "answers (streamed or edited), notes, the thinking status in channels",
    "assistant:write": "the assistant panel: status, suggested prompts, titles",
    "commands": "/secbot",
    "reactions:read": "👍 / 👎 / ✏️ on answers",
    "files:write": "/secbot export uploads the dataset",
    "users:read": "names of mentioned users and of approvers (users.info)",
    "usergroups:read": "SECBOT_ALLOWED_USERGROUP membership (usergroups.users.list)",
}
ASK_SOMETHING = "Ask me a security question, e.g. _What is lateral movement?_"
NOT_YOURS = "That answer is not one you can give feedback on here."


def visible(turn: Turn | None, user: str, channel: str | None) -> bool:
    """Whether `user`, acting in `channel`, may see and act on `turn`: it is in that channel,
    and a DM turn belongs to its asker alone."""
    if turn is None or (channel is not None and turn.channel != channel):
        return False
    return not turn.is_direct_message or turn.asker == user


# -- questions ----------------------------------------------------------------------------------
def answer_question(context, client):
    deps, q = context["secbot"], context["question"]
    refusal = deps.allowed(q.asker, q.channel)
    if refusal:
        client.chat_postEphemeral(channel=q.channel, user=q.asker, thread_ts=q.thread_ts, text=refusal)
        return
    if not q.text:
        client.chat_postMessage(channel=q.channel, thread_ts=q.thread_ts, text=ASK_SOMETHING)
        return
    try:
        deps.answerer.answer(q)
    except Exception:  # the store or Slack failed outside the answer itself
        error_id = new_error_id()
        log.exception("could not answer (error id %s)", error_id)
        client.chat_postMessage(channel=q.channel, thread_ts=q.thread_ts, text=FAILED.format(error_id=error_id))


# -- feedback -----------------------------------------------------------------------------------
def thumbs(deps, turn: Turn, user: str, up: bool, source: FeedbackSource) -> None:
    kind = FeedbackKind.THUMBS_UP if up else FeedbackKind.THUMBS_DOWN
    if deps.store.conversations.record_feedback(turn.id, user, kind, source) and up:
        deps.intake.thumbs_up(turn.id, user)


def on_reaction(context, event, client):
    deps, turn, reaction = context["secbot"], context["turn"], context["reaction"]
    user, item = event["user"], event["item"]
    if not visible(turn, user, item["channel"]) or deps.allowed(user, item["channel"]):
        return
    if reaction == deps.settings.slack.correction_reaction:
        deps.store.conversations.record_feedback(turn.id, user, FeedbackKind.CORRECTION_REQUESTED,
                                                 FeedbackSource.REACTION)
        # Reactions carry no trigger_id, so offer a button that can open the modal.
        client.chat_postEphemeral(channel=item["channel"], user=user, thread_ts=turn.thread_ts,
                                  text="Correct this answer", blocks=correction_offer_blocks(turn.id))
    else:
        thumbs(deps, turn, user, reaction in THUMBS_UP, FeedbackSource.REACTION)


def _channel(body: dict) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


def on_feedback_button(ack, body, action, context, respond):
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    value = action.get("value") or ""
    up = action["action_id"] == LEGACY_UP or value.startswith("up:")
    turn_id = value.split(":")[-1]
    turn = deps.store.conversations.get_turn(int(turn_id)) if turn_id.isdigit() else None
    if not visible(turn, user, _channel(body)):
        respond(text=NOT_YOURS, response_type="ephemeral", replace_original=False)
        return
    refusal = deps.allowed(user, _channel(body))
    if refusal:  # who may ask is who may teach: buttons, shortcut and modal check the same
        respond(text=refusal, response_type="ephemeral", replace_original=False)
        return
    thumbs(deps, turn, user, up, FeedbackSource.BUTTON)
    respond(text="Thanks, noted." if up else "Thanks. React :pencil2: or press *Correct this answer* to teach "
            "me the right one.", response_type="ephemeral", replace_original=False)


def open_correction(deps, client, trigger_id: str, turn: Turn) -> None:
    client.views_open(trigger_id=trigger_id,
                      view=correction_modal(turn.id, turn.channel, turn.question, turn.answer or ""))


def on_open_correction(ack, body, action, context, client):
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    value = action.get("value") or ""
    turn = deps.store.conversations.get_turn(int(value)) if value.isdigit() else None
    refusal = NOT_YOURS if not visible(turn, user, _channel(body)) else deps.allowed(user, _channel(body))
    if refusal:
        client.views_open(trigger_id=body["trigger_id"], view=message_modal("Correct this answer", refusal))
        return
    open_correction(deps, client, body["trigger_id"], turn)


def on_correction_shortcut(ack, body, context, client):
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    channel = body["channel"]["id"]
    turn = deps.store.conversations.turn_for_message(channel, body["message"]["ts"])
    if not visible(turn, user, channel):
        client.views_open(trigger_id=body["trigger_id"], view=message_modal(
            "Correct this answer", "That message is not one of secbot's answers."))
        return
    refusal = deps.allowed(user, channel)
    if refusal:
        client.views_open(trigger_id=body["trigger_id"], view=message_modal("Correct this answer", refusal))
        return
    deps.store.conversations.record_feedback(turn.id, user, FeedbackKind.CORRECTION_REQUESTED,
                                             FeedbackSource.SHORTCUT)
    open_correction(deps, client, body["trigger_id"], turn)


def on_correction_submitted(ack, body, view, context, client):
    deps, user = context["secbot"], body["user"]["id"]
    values = (view.get("state") or {}).get("values") or {}
    text = ((values.get(CORRECTION_INPUT) or {}).get(CORRECTION_INPUT) or {}).get("value") or ""
    text = text.strip()
    if not text:
        ack(response_action="errors", errors={CORRECTION_INPUT: "Write the answer secbot should give."})
        return
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        turn = deps.store.conversations.get_turn(int(meta["turn_id"]))
    except (ValueError, KeyError, TypeError):
        turn, meta = None, {}
    refusal = NOT_YOURS if not visible(turn, user, meta.get("channel")) else deps.allowed(user, meta.get("channel"))
    if refusal:
        ack(response_action="errors", errors={CORRECTION_INPUT: refusal})
        return
    ack()
    submission = deps.intake.correction(turn.id, user, text)
    client.chat_postEphemeral(channel=turn.channel, user=user, text=submission.message())


# -- admin --------------------------------------------------------------------------------------
def on_command(ack, command, context, client, respond):
    ack()
    deps = context["secbot"]
    user, text = command["user_id"], command.get("text", "").strip()
    if text.split()[:1] and text.split()[0].lower() == "export" and deps.admin.is_admin(user):
        path, count = deps.admin.export_file()
        try:
            client.files_upload_v2(channel=command["channel_id"], file=str(path), filename=path.name,
                                   title="secbot approved training records",
                                   initial_comment=f"{count} approved record(s), THUDM JSON lines.")
        except SlackApiError as exc:
            error = exc.response.get("error")
            hint = (" Invite secbot to this channel (`/invite @secbot`), or run the export in a channel it is in."
                    if error in ("not_in_channel", "channel_not_found") else "")
            respond(response_type="ephemeral", text=f"The export could not be uploaded: Slack said `{error}`.{hint}")
        return
    respond(response_type="ephemeral", **deps.admin.run(text, user))


def on_review(ack, body, action, context, client, respond):
    """Approve, reject or revoke, from the review queue in a channel or from the App Home."""
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    from_home = (body.get("view") or {}).get("type") == "home"

    def tell(text: str) -> None:
        if body.get("response_url"):
            respond(text=text, response_type="ephemeral", replace_original=False)
        else:  # the App Home has no response_url: a note in the app's DM with the user
            client.chat_postMessage(channel=user, text=text)

    if not deps.admin.is_admin(user):
        tell("Only secbot admins can review records.")
        return
    record_id = int(action["value"]) if str(action.get("value", "")).isdigit() else -1
    try:
        if action["action_id"] == REVIEW_REVOKE:
            done = deps.admin.revoke(record_id, user)
        else:
            record = deps.store.records.review(record_id, user, approve=action["action_id"] == REVIEW_APPROVE)
            done = f"Record #{record.id} {record.status.value}."
    except StoreError as exc:
        done = str(exc)
    if from_home:
        client.views_publish(user_id=user, view=deps.admin.home(user))
    tell(done)


def greet_in_messages_tab(deps, client, user: str, channel: str | None) -> bool:
    """Apps with the agent messaging experience (every new app): the Messages tab opens with no
    assistant thread, so each user is greeted there once, with the suggested prompts. True when
    this call greeted."""
    if not channel or deps.allowed(user, channel) or not deps.store.events.first_greeting(user):
        return False
    client.chat_postMessage(channel=channel, text=GREETING.format(name=deps.settings.model.assistant_name))
    prompts = suggested_prompts(deps.settings)
    if prompts:
        try:  # without a thread: the prompts of the Messages tab itself
            client.api_call("assistant.threads.setSuggestedPrompts",
                            json={"channel_id": channel, "prompts": prompts, "title": "Try asking"})
        except SlackApiError as exc:  # nice to have; the greeting is already there
            log.warning("could not set suggested prompts in %s: %s", channel, exc.response.get("error"))
    return True


def on_home_opened(event, context, client):
    deps = context["secbot"]
    if event.get("tab", "home") == "messages":
        greet_in_messages_tab(deps, client, event["user"], event.get("channel"))
        return
    client.views_publish(user_id=event["user"], view=deps.admin.home(event["user"]))


def ignore():
    """Acknowledge and drop: Slack then does not retry events secbot does not act on."""


def acknowledge(ack):
    ack()


def register_listeners(app: App, deps) -> None:
    app.use(attach(deps))
    app.event("app_mention", middleware=[question_once])(answer_question)
    app.event("message", middleware=[question_once])(answer_question)
    app.event("reaction_added", middleware=[reaction_once])(on_reaction)
    app.action(FEEDBACK)(on_feedback_button)
    app.action(LEGACY_UP)(on_feedback_button)
    app.action(LEGACY_DOWN)(on_feedback_button)
    app.action(OPEN_CORRECTION)(on_open_correction)
    app.shortcut(CORRECTION_SHORTCUT)(on_correction_shortcut)
    app.view(CORRECTION_MODAL)(on_correction_submitted)
    app.command("/secbot")(on_command)
    for action_id in (REVIEW_APPROVE, REVIEW_REJECT, REVIEW_REVOKE):
        app.action(action_id)(on_review)
    app.event("app_home_opened")(on_home_opened)
    # The agent messaging experience tells where the user is looking; answers do not use it yet.
    app.event("app_context_changed")(ignore)
    # Registered last: any other event or button is acknowledged and dropped, so Slack does not
    # retry it and a click on an old message does not show the user an error.
    app.event(re.compile(".*"))(ignore)
    app.action(re.compile(".*"))(acknowledge)
