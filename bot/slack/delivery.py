"""Answering a question in a Slack thread.

The question is stored first (so it is never lost), the thread shows what secbot is doing
(`bot.slack.progress`: searching team memory, what it found, the model asked), and the reply
(team memory or model, `feedback.answering`) streams in through Slack's native streaming
(`chat.startStream/appendStream/stopStream` via slack_sdk's `chat_stream`) or, where that is
unavailable, through a message edited at most once per `interval`; long answers continue in
further messages. Every message is tied to the turn as soon as it is posted, the answer is stored
before its feedback buttons appear, and a failure replaces what was shown with a short message
and an error id (a question too long for the model gets a reply that says how long it may be).
At start-up, questions a dead process left unanswered are answered, and half-shown answers are
replaced (`recover`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk

from secbot.bot.slack.progress import Progress, task_chunks
from secbot.bot.slack.rendering import (
    MESSAGE_LIMIT,
    InertStream,
    Pager,
    neutralise,
    notification_text,
    split_markdown,
)
from secbot.bot.slack.views import answer_blocks, feedback_blocks
from secbot.feedback.answering import Reply, Responder, provenance
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.store.entities import Turn
from secbot.feedback.store.schema import utcnow
from secbot.model.errors import QuestionTooLong

log = logging.getLogger(__name__)

CURSOR = " ▍"
FAILED = "Sorry, I could not answer that this time. The team can look it up by error id `{error_id}`."
TOO_LONG = ("That is too long for me to read in one go: {size}. Paste only the part that matters (the "
            "lines around the error, one log entry, the config block in question), or split it over "
            "several messages in this thread and ask about each.")
FILES_NOT_READ = "I do not read attached files ({names}); I answered from the text of your message."
ONLY_FILES = ("I do not read attached files ({names}). Paste the text you want me to look at into a "
              "message (only the part that matters) and ask your question.")
INTERRUPTED = ("Sorry, I was restarted while answering and could not finish. Please ask again; "
               "the team can look it up by error id `{error_id}`.")
# Errors that may mean a workspace streams but does not take task chunks: retried without them.
TASKS_REFUSED = {"invalid_chunks", "invalid_arguments", "not_supported"}
# Errors after which this workspace is taken not to offer native streaming here.
NO_STREAMING = {"unknown_method", "not_allowed_token_type", "method_deprecated", "feature_not_enabled",
                "not_supported", "invalid_arguments", "missing_scope"}


def new_error_id() -> str:
    return uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class Question:
    """A question as Slack delivered it, its text already plain (`bot.slack.incoming`)."""

    channel: str
    thread_ts: str
    text: str
    asker: str | None
    ts: str | None
    team: str | None = None
    files: tuple[str, ...] = ()  # names of files attached to it (not read)


def footer(reply: Reply, name_of) -> str | None:
    """Where an answer came from, for the line under it."""
    if reply.record is not None:
        return provenance(reply.record, name_of)
    if reply.references:
        cited = "; ".join(f"#{r.id} “{r.prompt[:60]}”" for r in reply.references)
        return f"Written by the model with the team's approved records as reference: {cited}"
    return None


class _Messages:
    """The messages of one answer in its thread, each known to the store as part of the turn the
    moment it exists (so a click, a follow-up or a restart finds it)."""

    def __init__(self, client: WebClient, conversations, turn_id: int, q: Question):
        self.client, self.conversations, self.turn_id, self.q = client, conversations, turn_id, q
        self.ts: list[str] = []

    def post(self, **message) -> str:
        posted = self.client.chat_postMessage(channel=self.q.channel, thread_ts=self.q.thread_ts, **message)
        self.add(posted["ts"])
        return posted["ts"]

    def add(self, ts: str) -> None:
        if ts not in self.ts:
            self.ts.append(ts)
            self.conversations.add_answer_messages(self.turn_id, self.q.channel, [ts])


class _Edited:
    """The fallback: messages posted and edited (throttled), split as the answer grows; a message
    is edited only when what it shows changed."""

    def __init__(self, messages: _Messages, interval: float, limit: int):
        self.messages, self.interval, self.limit = messages, interval, limit
        self.text, self.last = "", 0.0
        self.shown: list[list[dict]] = []  # the blocks each message shows

    def add(self, delta: str) -> None:
        self.text += delta
        if time.monotonic() - self.last >= self.interval:
            self._show(final=False)
            self.last = time.monotonic()

    def finish(self, text: str, note: str | None) -> None:
        self.text = text
        self._show(final=True, note=note)

    def _show(self, *, final: bool, note: str | None = None) -> None:
        m = self.messages
        pieces = split_markdown(neutralise(self.text), self.limit)  # sized as Slack will count them
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            shown = piece if final or not last else piece + CURSOR
            blocks = answer_blocks(shown, m.turn_id if final and last else None, note if last else None)
            if i < len(self.shown) and self.shown[i] == blocks:
                continue
            if i < len(m.ts):
                m.client.chat_update(channel=m.q.channel, ts=m.ts[i], text=notification_text(shown), blocks=blocks)
            else:
                m.post(text=notification_text(shown), blocks=blocks)
            self.shown[i:i + 1] = [blocks]


class _Native:
    """Slack's native streaming, laid out by `Pager`: each page is one streamed message. The first
    opens with the answer's task chunks (`bot.slack.progress`), where the workspace takes them."""

    def __init__(self, messages: _Messages, limit: int, buffer_size: int, tasks: list[dict] | None = None,
                 done: list[dict] | None = None, tasks_refused=lambda: None):
        self.messages, self.buffer_size = messages, buffer_size
        self.stream = None
        self.inert = InertStream()  # neutralised first, so pages are sized as Slack counts them
        self.pager = Pager(limit)
        self.page = 0
        self.tasks, self.done, self.tasks_refused = tasks or [], done or [], tasks_refused

    def _open(self):
        q = self.messages.q
        self.stream = self.messages.client.chat_stream(channel=q.channel, thread_ts=q.thread_ts,
                                                       recipient_team_id=q.team, recipient_user_id=q.asker,
                                                       buffer_size=self.buffer_size)

    def _append(self, text: str) -> None:
        if not text:
            return
        if self.stream is None:
            self._open()
        if self.stream.ts is None:  # start at once: the message shows, and belongs to the turn
            self._start(text)
        else:
            self.stream.append(markdown_text=text)
        self._register()

    def _start(self, text: str) -> None:
        tasks, self.tasks = self.tasks, []
        try:
            self.stream.append(chunks=[*tasks, MarkdownTextChunk(text=text)])
        except SlackApiError as exc:
            if not tasks or exc.response.get("error") not in TASKS_REFUSED:
                raise
            # Task chunks are nice to have: a workspace that refuses them gets the answer without.
            log.info("task chunks refused (%s); streaming without them", exc.response.get("error"))
            self.tasks_refused()
            self.done = []
            self._open()
            self.stream.append(chunks=[MarkdownTextChunk(text=text)])

    def _stop(self, **extra) -> None:
        done, self.done = self.done, []  # the model's task is complete once the first page is
        self.stream.stop(**({"chunks": done} if done else {}), **extra)

    def _register(self) -> None:
        if self.stream is not None and self.stream.ts:
            self.messages.add(self.stream.ts)

    def _lay_out(self, events) -> None:
        for page, text in events:
            if page != self.page and self.stream is not None:
                self._stop()
                self._register()
                self.stream = None
            self.page = page
            self._append(text)

    def add(self, delta: str) -> None:
        self._lay_out(self.pager.feed(self.inert.feed(delta)))

    def finish(self, text: str, note: str | None) -> None:
        self._lay_out(self.pager.feed(self.inert.flush()) + self.pager.flush())
        if self.stream is None or self.stream.ts is None:
            self._append(" " if self.messages.ts else text)
        self._stop(blocks=feedback_blocks(self.messages.turn_id, note))


class Answerer:
    def __init__(self, client: WebClient, intake: Intake, responder: Responder, *, name_of=lambda u: u,
                 interval: float = 1.0, timeout: float = 120.0, limit: int = MESSAGE_LIMIT,
                 streaming: bool = True, stream_buffer: int = 128, task_progress: bool = True):
        self.client, self.intake, self.responder, self.name_of = client, intake, responder, name_of
        self.conversations = intake.store.conversations
        self.interval, self.timeout, self.limit = interval, timeout, limit
        self.streaming, self.stream_buffer = streaming, stream_buffer
        self.task_progress = task_progress  # task chunks in streamed answers (off once refused)

    def answer(self, q: Question) -> int:
        """Store the question, then answer it in its thread; returns the turn id."""
        history = self.conversations.thread_history(q.channel, q.thread_ts)  # read once: for redaction and the model
        turn_id = self.intake.question(channel=q.channel, thread_ts=q.thread_ts, question=q.text,
                                       asker=q.asker, question_ts=q.ts, history=history)
        self._respond(turn_id, q, history)
        return turn_id

    def _respond(self, turn_id: int, q: Question, history) -> None:
        messages = _Messages(self.client, self.conversations, turn_id, q)
        started = time.monotonic()
        try:
            progress = Progress(self.client, q.channel, q.thread_ts, lambda text: messages.post(text=text))
            progress.searching()
            reply = self.responder.reply(q.text, history)
            version = self.responder.model.version_id
            progress.answering(reply, version)
            output = self._output(messages, reply, version)
            text = ""
            for delta in reply.deltas():
                text += delta
                if time.monotonic() - started > self.timeout:
                    raise TimeoutError(f"answer took over {self.timeout:.0f} s")
                try:
                    output.add(delta)
                except SlackApiError as exc:
                    output = self._fall_back(output, exc)
                    output.add(text)
            text = text if text.strip() else "(no answer)"
            # Stored before it is shown: a follow-up or a click must find it in the store.
            self.intake.answer(turn_id, text, q.text, answer_ts=messages.ts[0] if messages.ts else None,
                               model_version_id=None if reply.from_memory else reply.usage.version_id,
                               memory_record_id=reply.record.id if reply.record else None,
                               latency_ms=int((time.monotonic() - started) * 1000),
                               prompt_tokens=reply.usage.prompt_tokens,
                               completion_tokens=reply.usage.completion_tokens)
            note = footer(reply, self.name_of)
            if q.files:
                note = "\n".join(filter(None, [note, FILES_NOT_READ.format(names=", ".join(q.files))]))
            try:
                output.finish(text, note)
            except SlackApiError as exc:
                self._fall_back(output, exc).finish(text, note)
        except QuestionTooLong as exc:
            log.info("question too long in %s/%s: %s", q.channel, q.thread_ts, exc)
            self.intake.answer(turn_id, None, answer_ts=messages.ts[0] if messages.ts else None,
                               error_id=new_error_id(), latency_ms=int((time.monotonic() - started) * 1000))
            self.show_failure(q.channel, q.thread_ts, messages.ts, TOO_LONG.format(size=too_long_size(exc, q.text)))
        except Exception:
            error_id = new_error_id()
            log.exception("answer failed (error id %s) in %s/%s", error_id, q.channel, q.thread_ts)
            # Stored before it is shown, like an answer: whoever reads the id can find it.
            self.intake.answer(turn_id, None, answer_ts=messages.ts[0] if messages.ts else None, error_id=error_id,
                               latency_ms=int((time.monotonic() - started) * 1000))
            self.show_failure(q.channel, q.thread_ts, messages.ts, FAILED.format(error_id=error_id))

    def _output(self, messages: _Messages, reply: Reply, version: int | None):
        if self.streaming and messages.q.asker and not messages.ts:
            tasks = self.task_progress
            return _Native(messages, self.limit, self.stream_buffer,
                           tasks=task_chunks(reply, version) if tasks else None,
                           done=task_chunks(reply, version, done=True)[1:] if tasks else None,
                           tasks_refused=lambda: setattr(self, "task_progress", False))
        return _Edited(messages, self.interval, self.limit)

    def _fall_back(self, output, exc: SlackApiError) -> _Edited:
        """The one place that decides: native streaming refused before anything was shown, with
        an error that says this workspace lacks it, means edited messages from now on; any
        other failure is the answer's failure (re-raised)."""
        if not isinstance(output, _Native) or output.messages.ts or exc.response.get("error") not in NO_STREAMING:
            raise exc
        log.warning("native streaming unavailable (%s); answering with edited messages", exc.response.get("error"))
        self.streaming = False
        return _Edited(output.messages, self.interval, self.limit)

    def show_failure(self, channel: str, thread_ts: str, message_ts: list[str], text: str) -> None:
        """Replace whatever the answer showed with `text` (or post it); never leave a half answer."""
        try:
            if not message_ts:
                self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
                return
            self.client.chat_update(channel=channel, ts=message_ts[0], text=text, blocks=[])
            for ts in message_ts[1:]:
                self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError:
            log.exception("could not show the failure in %s/%s", channel, thread_ts)

    # -- start-up --------------------------------------------------------------------------------
    def recover(self, older_than: timedelta | None = None) -> int:
        """Finish questions whose process died: answer those nothing was shown for, replace
        half-shown answers. Only turns older than `older_than` (default: the answer timeout
        and a minute), so another replica's answers in progress are left alone."""
        if older_than is None:
            older_than = timedelta(seconds=self.timeout + 60)
        done = 0
        for turn in self.conversations.unfinished_turns(before=utcnow() - older_than):
            shown = self.conversations.answer_messages(turn.id)
            try:
                if shown:
                    self._interrupted(turn, shown)
                else:
                    log.warning("answering turn %s, left unanswered by a stopped process", turn.id)
                    self._respond(turn.id, _question(turn), self.conversations.thread_history(
                        turn.channel, turn.thread_ts, before_turn=turn.id))
                done += 1
            except Exception:
                log.exception("could not recover turn %s", turn.id)
        return done

    def _interrupted(self, turn: Turn, shown: list[str]) -> None:
        error_id = new_error_id()
        if self.conversations.mark_failed(turn.id, error_id):
            log.warning("turn %s was cut off by a stopped process (error id %s)", turn.id, error_id)
            self.show_failure(turn.channel, turn.thread_ts, shown, INTERRUPTED.format(error_id=error_id))


def too_long_size(exc: QuestionTooLong, text: str) -> str:
    """How long the question is and how long it may be, as the model's figures allow."""
    if exc.prompt_tokens and exc.limit and exc.limit > 0:
        chars = int(len(text) * exc.limit / exc.prompt_tokens) // 100 * 100
        return (f"it is about {exc.prompt_tokens:,} tokens ({len(text):,} characters) and my model takes at most "
                f"{exc.limit:,} tokens, roughly {max(chars, 100):,} characters of text like this")
    return f"it is {len(text):,} characters, more than my model takes"


def _question(turn: Turn) -> Question:
    return Question(turn.channel, turn.thread_ts, turn.question, turn.asker, turn.question_ts)
