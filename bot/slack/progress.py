"""What the thread shows while secbot works: "Searching team memory…", then what memory found
and "Asking model v3…".

Three surfaces, best first: the assistant thread status (`assistant.threads.setStatus`, with
`loading_messages` that Slack rotates under it); task chunks at the top of a natively streamed
answer (`task_update`: memory searched, with what it found; the model asked, complete when the
answer is); and, where the status is refused, a placeholder message whose text follows the stages
(the answer then replaces it).
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from secbot.feedback.answering import Reply

log = logging.getLogger(__name__)

THINKING = "is thinking…"
SEARCHING = "Searching team memory…"
PLACEHOLDER = ":hourglass_flowing_sand: " + SEARCHING


def model_name(version_id: int | None) -> str:
    return f"model v{version_id}" if version_id is not None else "the base model"


def found(reply: Reply) -> str:
    """What the memory search found, in a few words."""
    if reply.record is not None:
        return f"Found record #{reply.record.id}: the team's answer"
    if reply.references:
        return "Found " + ", ".join(f"#{r.id}" for r in reply.references) + " as reference"
    return "No approved answer matched"


def stages(reply: Reply, version_id: int | None) -> list[str]:
    """The status lines after the search: what it found, then the model being asked."""
    return [found(reply)] + ([] if reply.from_memory else [f"Asking {model_name(version_id)}…"])


def task_chunks(reply: Reply, version_id: int | None, done: bool = False) -> list[dict]:
    """`task_update` chunks: the search (complete, with what it found) and, for a model answer,
    the model (in progress, or complete once `done`)."""
    chunks = [{"type": "task_update", "id": "memory", "title": "Searched team memory", "status": "complete",
               "output": found(reply)}]
    if not reply.from_memory:
        chunks.append({"type": "task_update", "id": "model", "title": f"Asked {model_name(version_id)}",
                       "status": "complete" if done else "in_progress"})
    return chunks


class Progress:
    """The stages of one answer in its thread."""

    def __init__(self, client, channel: str, thread_ts: str, post_placeholder):
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.post_placeholder = post_placeholder  # posts the placeholder; returns its ts
        self.status = True  # the thread status is shown (else the placeholder is)
        self.placeholder: str | None = None

    def _set_status(self, messages: list[str]) -> None:
        self.client.assistant_threads_setStatus(channel_id=self.channel, thread_ts=self.thread_ts,
                                                status=THINKING, loading_messages=messages)

    def searching(self) -> None:
        try:
            self._set_status([SEARCHING])
        except SlackApiError as exc:  # not every surface has it: show a placeholder instead
            log.info("no thread status in %s (%s); posting a placeholder", self.channel, exc.response.get("error"))
            self.status = False
            self.placeholder = self.post_placeholder(PLACEHOLDER)

    def answering(self, reply: Reply, version_id: int | None) -> None:
        """After the search: say what it found and what answers now. Nice to have: a refusal
        here never stops the answer."""
        lines = stages(reply, version_id)
        try:
            if self.status:
                self._set_status(lines)
            elif self.placeholder:
                self.client.chat_update(channel=self.channel, ts=self.placeholder,
                                        text=":hourglass_flowing_sand: " + " · ".join(lines))
        except SlackApiError as exc:
            log.info("could not show progress in %s: %s", self.channel, exc.response.get("error"))
