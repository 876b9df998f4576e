"""Which Slack events are questions secbot answers, and the question each one asks.

- `app_mention` in channels and group DMs;
- any message in a DM with the bot (Slack sends no `app_mention` there), with files too: the
  files are not read, and a file with no words gets a reply that says so;
- a message that mentions the bot, wherever it arrives as a `message` event;
- a reply (also one sent to the channel, `thread_broadcast`) in a thread secbot already answered.

An `app_mention` and a `message` event for one Slack message are one question: it is claimed by
channel and timestamp (`bot.slack.middleware`), so it is answered once.
"""

from __future__ import annotations

from secbot.bot.slack.delivery import Question
from secbot.bot.slack.incoming import mentions, normalise

ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}


def question_from(event: dict, body: dict, bot_user: str | None, deps) -> Question | None:
    kind = event.get("type")
    if kind not in ("app_mention", "message") or event.get("bot_id") or (bot_user and event.get("user") == bot_user):
        return None
    if kind == "message" and event.get("subtype") not in ANSWERED_SUBTYPES:
        return None  # edits (message_changed), deletions, joins, other bots
    raw = event.get("text") or ""
    channel, ts = event.get("channel"), event.get("ts")
    if not channel or not ts:
        return None
    thread_ts = event.get("thread_ts") or ts
    if kind == "message":
        in_dm = event.get("channel_type") == "im"
        in_known_thread = (thread_ts != ts and deps.settings.slack.answer_thread_replies
                           and deps.store.conversations.thread_known(channel, thread_ts))
        if not (in_dm or mentions(raw, bot_user) or in_known_thread):
            return None
        if not raw.strip() and not (in_dm and event.get("files")):
            return None  # nothing to answer: no words, and no file to say we cannot read
    text = normalise(raw, bot_user, deps.directory.name)
    return Question(channel=channel, thread_ts=thread_ts, text=text, asker=event.get("user"), ts=ts,
                    team=event.get("team") or body.get("team_id"), files=file_names(event))


def file_names(event: dict) -> tuple[str, ...]:
    """The names of the files a message carries (Slack hides some: those are "a file")."""
    return tuple(f.get("name") or f.get("title") or "a file" for f in event.get("files") or [] if isinstance(f, dict))
