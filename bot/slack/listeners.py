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

from secbot.bot.slack.delivery import FAILED, ONLY_FILES, new_error_id
from secbot.bot.slack.middleware import THUMBS_UP, attach, question_once, reaction_once
from secbot.bot.slack.review import (
    REJECT_INPUT,
    REJECT_MODAL,
    REVIEW_APPROVE,
    REVIEW_PAGE,
    REVIEW_REJECT,
    REVIEW_REVOKE,
    reject_modal,
)
from secbot.bot.slack.views import (
    CORRECTION_INPUT,
    CORRECTION_MODAL,
    CORRECTION_SHORTCUT,
    DOWN_REASON,
    FEEDBACK,
    GREETING,
    LEGACY_DOWN,
    LEGACY_UP,
    OPEN_CORRECTION,
    REASON_DETAIL,
    REASON_INPUT,
    REASON_MODAL,
    correction_modal,
    correction_offer_blocks,
    down_reason_blocks,
    message_modal,
    reason_modal,
    suggested_prompts,
)
from secbot.feedback.store.entities import DownReason, FeedbackKind, FeedbackSource, Turn

log = logging.getLogger(__name__)
# What these listeners need from Slack; deploy/manifest.yml declares exactly these.
BOT_EVENTS = {"app_mention", "message.channels", "message.groups", "message.im", "message.mpim",
              "reaction_added", "app_home_opened", "assistant_thread_started", "tokens_revoked",
              "app_uninstalled"}
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
REASON_QUESTION = "What was wrong with this answer?"
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
        text = ONLY_FILES.format(names=", ".join(q.files)) if q.files else ASK_SOMETHING
        client.chat_postMessage(channel=q.channel, thread_ts=q.thread_ts, text=text)
        return
    try:
        deps.answerer.answer(q)
    except Exception:  # the store or Slack failed outside the answer itself
        error_id = new_error_id()
        log.exception("could not answer (error id %s)", error_id)
        client.chat_postMessage(channel=q.channel, thread_ts=q.thread_ts, text=FAILED.format(error_id=error_id))


# -- feedback -----------------------------------------------------------------------------------
def thumbs(deps, turn: Turn, user: str, up: bool, source: FeedbackSource) -> str | None:
    """Record 👍/👎; on a model answer each becomes a labelled completion, a 👍 also proposes the
    answer as a record; a 👎 on a team answer sends its record back to review. Returns what the analyst should be told about that, if anything."""
    kind = FeedbackKind.THUMBS_UP if up else FeedbackKind.THUMBS_DOWN
    if not deps.store.conversations.record_feedback(turn.id, user, kind, source):
        return None
    if up:
        deps.intake.thumbs_up(turn.id, user, source)
        return None
    disputed = deps.intake.thumbs_down(turn.id, user, source)
    if disputed is None:
        return None
    return (f"That was the team's answer (record #{disputed.id}): it stops answering from team memory "
            "now and waits for an admin's review, with your reason.")


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
        return
    up = reaction in THUMBS_UP
    disputed = thumbs(deps, turn, user, up, FeedbackSource.REACTION)
    if not up:  # ask what was wrong: the reviewers need the reason, the analyst may correct it
        client.chat_postEphemeral(channel=item["channel"], user=user, thread_ts=turn.thread_ts,
                                  text=REASON_QUESTION, blocks=down_reason_blocks(turn.id, note=disputed))


def _channel(body: dict) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


def typed(view: dict, block: str) -> str:
    """What was typed into a modal's text input (its block and action share the id `block`)."""
    values = (view.get("state") or {}).get("values") or {}
    return ((values.get(block) or {}).get(block) or {}).get("value") or ""


def _turn_of(deps, value: str) -> Turn | None:
    """The turn a button's value names (its last `:`-separated part)."""
    turn_id = (value or "").split(":")[-1]
    return deps.store.conversations.get_turn(int(turn_id)) if turn_id.isdigit() else None


def _refusal(deps, turn: Turn | None, user: str, channel: str | None) -> str | None:
    """Why `user` may not act on `turn` from `channel`: who may ask is who may teach (buttons,
    shortcut and modals all check the same)."""
    return NOT_YOURS if not visible(turn, user, channel) else deps.allowed(user, channel)


def on_feedback_button(ack, body, action, context, respond):
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    value = action.get("value") or ""
    up = action["action_id"] == LEGACY_UP or value.startswith("up:")
    turn = _turn_of(deps, value)
    refusal = _refusal(deps, turn, user, _channel(body))
    if refusal:
        respond(text=refusal, response_type="ephemeral", replace_original=False)
        return
    disputed = thumbs(deps, turn, user, up, FeedbackSource.BUTTON)
    if up:
        respond(text="Thanks, noted.", response_type="ephemeral", replace_original=False)
    else:
        respond(text=REASON_QUESTION, blocks=down_reason_blocks(turn.id, note=disputed), response_type="ephemeral",
                replace_original=False)


def on_down_reason(ack, body, action, context, client, respond):
    """A reason chosen in the 👎 reply: stored at once; "Other…" and "Add details" ask for words."""
    ack()
    deps, user, channel = context["secbot"], body["user"]["id"], _channel(body)
    value = action.get("value") or ""
    turn = _turn_of(deps, value)
    try:
        reason = DownReason(value.split(":")[0])
    except ValueError:
        turn, reason = None, None
    refusal = _refusal(deps, turn, user, channel)
    if refusal:
        respond(text=refusal, response_type="ephemeral", replace_original=False)
        return
    if reason is DownReason.OTHER or action["action_id"] == REASON_DETAIL:
        client.views_open(trigger_id=body["trigger_id"], view=reason_modal(turn.id, turn.channel, reason, turn.question))
        return
    deps.intake.down_reason(turn.id, user, reason, None, FeedbackSource.BUTTON)
    respond(text=f"Noted: {reason.label}.", blocks=down_reason_blocks(turn.id, reason), response_type="ephemeral",
            replace_original=True)


def on_reason_submitted(ack, body, view, context, client):
    deps, user = context["secbot"], body["user"]["id"]
    note = typed(view, REASON_INPUT)
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        turn, reason = deps.store.conversations.get_turn(int(meta["turn_id"])), DownReason(meta["reason"])
    except (ValueError, KeyError, TypeError):
        turn, reason, meta = None, None, {}
    refusal = _refusal(deps, turn, user, meta.get("channel"))
    if refusal:
        ack(response_action="errors", errors={REASON_INPUT: refusal})
        return
    ack()
    deps.intake.down_reason(turn.id, user, reason, note, FeedbackSource.BUTTON)
    client.chat_postEphemeral(channel=turn.channel, user=user, thread_ts=turn.thread_ts,
                              text=f"Thanks, noted: {reason.label}. The admins see it when they review.")


def open_correction(deps, client, trigger_id: str, turn: Turn) -> None:
    client.views_open(trigger_id=trigger_id,
                      view=correction_modal(turn.id, turn.channel, turn.question, turn.answer or ""))


def on_open_correction(ack, body, action, context, client):
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    turn = _turn_of(deps, action.get("value") or "")
    refusal = _refusal(deps, turn, user, _channel(body))
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
    text = typed(view, CORRECTION_INPUT).strip()
    if not text:
        ack(response_action="errors", errors={CORRECTION_INPUT: "Write the answer secbot should give."})
        return
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        turn = deps.store.conversations.get_turn(int(meta["turn_id"]))
    except (ValueError, KeyError, TypeError):
        turn, meta = None, {}
    refusal = _refusal(deps, turn, user, meta.get("channel"))
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


def _teller(body: dict, client, respond=None):
    """How to tell an admin the outcome: in the channel they clicked in (ephemeral, through the
    response_url), else (the App Home has none) in the app's DM with them."""
    user, url = body["user"]["id"], body.get("response_url")

    def tell(text: str) -> None:
        if url and respond is not None:
            respond(text=text, response_type="ephemeral", replace_original=False)
        elif url:
            from slack_sdk.webhook import WebhookClient

            WebhookClient(url).send(text=text, response_type="ephemeral", replace_original=False)
        else:
            client.chat_postMessage(channel=user, text=text)
    return tell


def on_review(ack, body, action, context, client, respond):
    """Approve, revoke, page, or ask why before rejecting: from the review queue in a channel or
    from the App Home."""
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    from_home = (body.get("view") or {}).get("type") == "home"
    tell = _teller(body, client, respond)
    if not deps.admin.is_admin(user):
        tell("Only secbot admins can review records.")
        return
    value = str(action.get("value", ""))
    number = int(value) if value.isdigit() else -1
    if action["action_id"] == REVIEW_PAGE:
        if from_home:
            client.views_publish(user_id=user, view=deps.home.view(user, max(number, 0)))
        else:
            respond(text="Records waiting for review", blocks=deps.review.blocks(max(number, 0)),
                    response_type="ephemeral", replace_original=True)
        return
    if action["action_id"] == REVIEW_REJECT:
        client.views_open(trigger_id=body["trigger_id"],
                          view=reject_modal(number, from_home=from_home, response_url=body.get("response_url")))
        return
    done = (deps.admin.revoke if action["action_id"] == REVIEW_REVOKE else deps.admin.approve)(number, user)
    if from_home:
        client.views_publish(user_id=user, view=deps.home.view(user))
    tell(done)


def on_reject_submitted(ack, body, view, context, client):
    ack()
    deps, user = context["secbot"], body["user"]["id"]
    meta = json.loads(view.get("private_metadata") or "{}")
    why = typed(view, REJECT_INPUT)
    tell = _teller({"user": body["user"], "response_url": meta.get("response_url")}, client)
    if not deps.admin.is_admin(user):
        tell("Only secbot admins can review records.")
        return
    done = deps.admin.reject(int(meta.get("record_id", -1)), user, why)
    if meta.get("home"):
        client.views_publish(user_id=user, view=deps.home.view(user))
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
    client.views_publish(user_id=event["user"], view=deps.home.view(event["user"]))


def on_revoked(event, body, context):
    """`tokens_revoked` (the bot's token) and `app_uninstalled`: recorded, and nothing is posted in
    that workspace any more (`Deps.silenced`) until secbot starts with a token that works there."""
    deps, team = context["secbot"], body.get("team_id") or context.team_id
    if event["type"] == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
        log.info("user tokens revoked in %s; the bot token is unaffected", team)
        return
    deps.silence(team, event["type"])
    log.warning("%s in workspace %s: secbot stops posting there until it is reinstalled", event["type"], team)


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
    app.action(DOWN_REASON)(on_down_reason)
    app.action(REASON_DETAIL)(on_down_reason)
    app.view(REASON_MODAL)(on_reason_submitted)
    for action_id in (REVIEW_APPROVE, REVIEW_REJECT, REVIEW_REVOKE, REVIEW_PAGE):
        app.action(action_id)(on_review)
    app.view(REJECT_MODAL)(on_reject_submitted)
    app.event("tokens_revoked")(on_revoked)
    app.event("app_uninstalled")(on_revoked)
    app.event("app_home_opened")(on_home_opened)
    # The agent messaging experience tells where the user is looking; answers do not use it yet.
    app.event("app_context_changed")(ignore)
    # Registered last: any other event or button is acknowledged and dropped, so Slack does not
    # retry it and a click on an old message does not show the user an error.
    app.event(re.compile(".*"))(ignore)
    app.action(re.compile(".*"))(acknowledge)
