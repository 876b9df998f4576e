"""Cross-cutting concerns of the Slack app, as bolt middleware.

`attach` hands the listeners their dependencies, and acknowledges and drops every request from a
workspace that revoked secbot's token or uninstalled it (nothing is posted there). `once` is the event de-duplication: it claims
in the store, across processes and restarts, only the events secbot acts on (a question by its
channel and timestamp, so a message arriving as both `app_mention` and `message` is one
question; a reaction on an answer by its event id), and drops any it has seen. Slack's retries
and duplicates therefore do nothing twice; events secbot ignores claim nothing.
"""

from __future__ import annotations

import logging

from slack_bolt import BoltResponse

from secbot.bot.slack.questions import question_from

log = logging.getLogger(__name__)
THUMBS_UP = {"+1", "thumbsup"}
THUMBS_DOWN = {"-1", "thumbsdown"}
REVOCATIONS = {"tokens_revoked", "app_uninstalled"}


def attach(deps):
    def middleware(context, body, next):
        context["secbot"] = deps
        event = (body.get("event") or {}).get("type") if isinstance(body, dict) else None
        silenced = event not in REVOCATIONS and deps.silenced(context.team_id)
        if silenced:
            log.info("dropped a request from %s: %s, nothing is posted there", context.team_id, silenced)
            return BoltResponse(status=200, body="")
        next()
    return middleware


def _claim(deps, key: str) -> bool:
    """Claim `key` once; if the store cannot be reached, act anyway (twice beats never)."""
    try:
        return deps.store.events.claim(key)
    except Exception:
        log.exception("could not claim %s; handling it without de-duplication", key)
        return True


def question_once(context, event, body, next):
    """For question listeners: go on only with a question secbot answers, the first time."""
    deps = context["secbot"]
    question = question_from(event, body, context.bot_user_id, deps)
    if question is None or not _claim(deps, f"q:{question.channel}:{question.ts}"):
        return  # not a question, or answered already: the catch-all listener acknowledges it
    context["question"] = question
    next()


def reaction_once(context, event, body, next):
    """For the reaction listener: go on only with feedback on one of secbot's answers."""
    deps = context["secbot"]
    item = event.get("item") or {}
    reaction = (event.get("reaction") or "").split("::")[0]
    if item.get("type") != "message" or reaction not in THUMBS_UP | THUMBS_DOWN | {deps.settings.slack.correction_reaction}:
        return
    turn = deps.store.conversations.turn_for_message(item.get("channel"), item.get("ts"))
    if turn is None or not _claim(deps, body.get("event_id") or f"r:{item['channel']}:{item['ts']}:{reaction}"):
        return
    context["turn"], context["reaction"] = turn, reaction
    next()
