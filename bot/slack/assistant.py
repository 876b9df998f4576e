"""Slack's assistant side panel (bolt's `Assistant`): suggested prompts when a thread starts, a
title from the first question, and every question on the same path as mentions and DMs (the
`once` claim, team memory, streaming, feedback)."""

from __future__ import annotations

import logging

from slack_bolt import Assistant
from slack_bolt.middleware.custom_middleware import CustomMiddleware

from secbot.bot.slack.listeners import answer_question
from secbot.bot.slack.middleware import question_once

log = logging.getLogger(__name__)
GREETING = "Hi! I am {name}, the security team's own assistant. What would you like to know?"


def thread_started(say, set_suggested_prompts, context):
    settings = context["secbot"].settings
    say(GREETING.format(name=settings.model.assistant_name))
    prompts = [p for p in settings.slack.suggested_prompts if p][:4]
    if prompts:
        set_suggested_prompts(prompts=[{"title": p[:75], "message": p} for p in prompts],
                              title="Try asking")


def user_message(context, client, set_title):
    question = context["question"]
    if context["secbot"].store.conversations.thread_known(question.channel, question.thread_ts) is False:
        try:
            set_title(question.text[:60] or "Security question")
        except Exception:  # a title is nice to have; the claimed question must still be answered
            log.warning("could not title the assistant thread %s/%s", question.channel, question.thread_ts,
                        exc_info=True)
    answer_question(context, client)


def build_assistant() -> Assistant:
    assistant = Assistant()
    assistant.thread_started(thread_started)
    # The panel takes middleware objects where an app takes functions.
    assistant.user_message(middleware=[CustomMiddleware(app_name="secbot", func=question_once)])(user_message)
    return assistant
