"""Slack's assistant side panel (bolt's `Assistant`): suggested prompts when a thread starts, a
title from the first question, and every question on the same path as mentions and DMs (the
`once` claim, team memory, streaming, feedback)."""

from __future__ import annotations

import logging

from slack_bolt import Assistant
from slack_bolt.middleware.custom_middleware import CustomMiddleware

from secbot.bot.slack.listeners import answer_question
from secbot.bot.slack.middleware import question_once
from secbot.bot.slack.views import GREETING, suggested_prompts

log = logging.getLogger(__name__)


def thread_started(say, set_suggested_prompts, context):
    """Apps with the legacy assistant view: each new assistant thread is greeted."""
    settings = context["secbot"].settings
    say(GREETING.format(name=settings.model.assistant_name))
    if suggested_prompts(settings):
        set_suggested_prompts(prompts=suggested_prompts(settings), title="Try asking")




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
