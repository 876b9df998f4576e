"""Answering a question in a Slack thread: placeholder, streamed edits, split long answers, store."""

from __future__ import annotations

import logging
import time
import uuid

from slack_sdk import WebClient

from secbot.bot.model_client import ModelClient, Usage
from secbot.bot.slack_views import SECTION_LIMIT, answer_blocks
from secbot.feedback.store import Store

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


class Answerer:
    """Streams the model's answer into a thread, edited at most every `interval` seconds."""

    def __init__(self, client: WebClient, store: Store, model: ModelClient, *,
                 interval: float = 1.0, timeout: float = 120.0, limit: int = SECTION_LIMIT):
        self.client, self.store, self.model = client, store, model
        self.interval, self.timeout, self.limit = interval, timeout, limit

    def answer(self, *, channel: str, thread_ts: str, question: str, asker: str | None,
               question_ts: str | None) -> int:
        """Answer in the thread; the question is stored first, so it is kept even on failure."""
        history = self.store.thread_history(channel, thread_ts)
        turn_id = self.store.record_question(channel=channel, thread_ts=thread_ts, question=question,
                                             asker=asker, question_ts=question_ts, history=history)
        posted = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=PLACEHOLDER)
        message_ts = [posted["ts"]]
        started = time.monotonic()
        usage = Usage()
        text = ""
        try:
            last_edit = 0.0
            for delta in self.model.stream(question, history, usage):
                text += delta
                if time.monotonic() - started > self.timeout:
                    raise TimeoutError(f"answer took over {self.timeout:.0f} s")
                if time.monotonic() - last_edit >= self.interval:
                    self._show(channel, message_ts, thread_ts, text, final=False)
                    last_edit = time.monotonic()
            if not text.strip():
                text = "(no answer)"
            # Stored before it is shown: a follow-up or a click must find it in the store.
            self.store.record_answer(turn_id, answer=text, answer_ts=message_ts[0],
                                     model_version_id=self.model.version_id,
                                     latency_ms=int((time.monotonic() - started) * 1000),
                                     prompt_tokens=usage.prompt_tokens,
                                     completion_tokens=usage.completion_tokens)
            self._show(channel, message_ts, thread_ts, text, final=True, turn_id=turn_id)
        except Exception:
            error_id = new_error_id()
            log.exception("answer failed (error id %s) in %s/%s", error_id, channel, thread_ts)
            # Stored before it is shown, like an answer: whoever reads the id can find it.
            self.store.record_answer(turn_id, answer=None, answer_ts=message_ts[0], error_id=error_id,
                                     model_version_id=self.model.version_id,
                                     latency_ms=int((time.monotonic() - started) * 1000))
            self.client.chat_update(channel=channel, ts=message_ts[0],
                                    text=FAILED.format(error_id=error_id))
        return turn_id

    def _show(self, channel, message_ts: list[str], thread_ts, text, *, final, turn_id=None) -> None:
        """Edit the thread's answer messages to show `text`, posting more as it outgrows one."""
        pieces = split_text(text, self.limit)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            body = piece if final or not last else piece + CURSOR
            blocks = answer_blocks(piece, turn_id) if final and last and turn_id is not None else None
            if i < len(message_ts) - 1:
                continue  # an earlier piece: sealed (its text cannot change) when the next began
            if i < len(message_ts):
                self.client.chat_update(channel=channel, ts=message_ts[i], text=body, blocks=blocks)
            else:
                posted = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=body,
                                                      blocks=blocks)
                message_ts.append(posted["ts"])
