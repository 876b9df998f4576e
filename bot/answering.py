"""Answering a question in a Slack thread: store it, reply (team memory or model, through
`feedback.answering`), stream the answer into the thread, split long answers, store every piece."""

from __future__ import annotations

import logging
import time
import uuid

from slack_sdk import WebClient

from secbot.bot.slack_views import SECTION_LIMIT, answer_blocks
from secbot.feedback.answering import Reply, Responder, provenance
from secbot.feedback.intake import Intake

log = logging.getLogger(__name__)

PLACEHOLDER = ":hourglass_flowing_sand: Thinking…"
CURSOR = " ▍"
FAILED = ("Sorry, I could not answer that this time. The team can look it up by error id "
          "`{error_id}`.")


def new_error_id() -> str:
    return uuid.uuid4().hex[:10]


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at a paragraph, line or word where possible."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        # Prefer a paragraph break, then a line break, then a space, in the piece's second half.
        cut = next((i for i in (window.rfind(sep) for sep in ("\n\n", "\n", " ")) if i > limit // 2),
                   limit)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return pieces + [text]


def footer(reply: Reply, name_of) -> str | None:
    """Where an answer came from, for the line under it."""
    if reply.record is not None:
        return provenance(reply.record, name_of)
    if reply.references:
        cited = "; ".join(f"#{r.id} “{r.prompt[:60]}”" for r in reply.references)
        return f"Written by the model with the team's approved records as reference: {cited}"
    return None


class Answerer:
    """Streams an answer into a thread, edited at most every `interval` seconds."""

    def __init__(self, client: WebClient, intake: Intake, responder: Responder, *, name_of=lambda u: u,
                 interval: float = 1.0, timeout: float = 120.0, limit: int = SECTION_LIMIT):
        self.client, self.intake, self.responder, self.name_of = client, intake, responder, name_of
        self.conversations = intake.store.conversations
        self.interval, self.timeout, self.limit = interval, timeout, limit

    def answer(self, *, channel: str, thread_ts: str, question: str, asker: str | None,
               question_ts: str | None) -> int:
        """Answer in the thread; the question is stored first, so it is kept even on failure."""
        history = self.conversations.thread_history(channel, thread_ts)
        turn_id = self.intake.question(channel=channel, thread_ts=thread_ts, question=question,
                                       asker=asker, question_ts=question_ts)
        message_ts: list[str] = []
        self._post(turn_id, channel, thread_ts, message_ts, text=PLACEHOLDER)
        started = time.monotonic()
        text = ""
        reply = None
        try:
            reply = self.responder.reply(question, history)
            last_edit = 0.0
            for delta in reply.deltas():
                text += delta
                if time.monotonic() - started > self.timeout:
                    raise TimeoutError(f"answer took over {self.timeout:.0f} s")
                if time.monotonic() - last_edit >= self.interval:
                    self._show(turn_id, channel, message_ts, thread_ts, text, final=False)
                    last_edit = time.monotonic()
            if not text.strip():
                text = "(no answer)"
            # Stored before it is shown: a follow-up or a click must find it in the store.
            self.intake.answer(turn_id, text, answer_ts=message_ts[0],
                               model_version_id=None if reply.from_memory else reply.usage.version_id,
                               memory_record_id=reply.record.id if reply.record else None,
                               latency_ms=int((time.monotonic() - started) * 1000),
                               prompt_tokens=reply.usage.prompt_tokens,
                               completion_tokens=reply.usage.completion_tokens)
            self._show(turn_id, channel, message_ts, thread_ts, text, final=True, note=footer(reply, self.name_of))
        except Exception:
            error_id = new_error_id()
            log.exception("answer failed (error id %s) in %s/%s", error_id, channel, thread_ts)
            # Stored before it is shown, like an answer: whoever reads the id can find it.
            self.intake.answer(turn_id, None, answer_ts=message_ts[0], error_id=error_id,
                               latency_ms=int((time.monotonic() - started) * 1000))
            self.client.chat_update(channel=channel, ts=message_ts[0], text=FAILED.format(error_id=error_id))
        return turn_id

    def _post(self, turn_id: int, channel, thread_ts, message_ts: list[str], **message) -> None:
        """Post the answer's next message, known to the store as part of the turn at once."""
        posted = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message)
        message_ts.append(posted["ts"])
        self.conversations.add_answer_messages(turn_id, channel, [posted["ts"]])

    def _show(self, turn_id: int, channel, message_ts: list[str], thread_ts, text, *, final, note=None) -> None:
        """Edit the thread's answer messages to show `text`, posting more as it outgrows one."""
        pieces = split_text(text, self.limit)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            body = piece if final or not last else piece + CURSOR
            blocks = answer_blocks(piece, turn_id, note) if final and last else None
            if i < len(message_ts) - 1:
                continue  # an earlier piece: sealed (its text cannot change) when the next began
            if i < len(message_ts):
                self.client.chat_update(channel=channel, ts=message_ts[i], text=body, blocks=blocks)
            else:
                self._post(turn_id, channel, thread_ts, message_ts, text=body, blocks=blocks)
