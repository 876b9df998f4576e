"""The review queue: records waiting for an admin, a page of ten at a time, each shown with what
a reviewer needs to decide: the question, the answer secbot gave, the correction, who sent it and
when, what analysts said was wrong (👎 reasons) and a link to the thread. Approve is one click;
Reject asks why (`reject_modal`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from secbot.bot.slack.rendering import escape_mrkdwn
from secbot.bot.slack.views import NOTE_LIMIT, SECTION_LIMIT, dicts
from secbot.feedback.store.entities import DownVote, RecordSource, RecordStatus, TrainingRecord, Turn
from secbot.feedback.store.repositories import Store

PAGE = 10  # records per page: three blocks each keeps a page well inside Slack's 50
REVIEW_APPROVE, REVIEW_REJECT, REVIEW_REVOKE = "review_approve", "review_reject", "review_revoke"
REVIEW_PAGE, REJECT_MODAL, REJECT_INPUT = "review_page", "reject_modal", "reject_reason"
SOURCES = {RecordSource.CORRECTION: "correction", RecordSource.APPROVED_ANSWER: "👍 answer",
           RecordSource.IMPORT: "import"}


@dataclass(frozen=True)
class ReviewItem:
    record: TrainingRecord
    turn: Turn | None  # the answer it corrects or approves, when it came from Slack
    down_votes: list[DownVote]
    link: str | None  # to the answer in its thread


def cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def down_vote_line(vote: DownVote, name_of: Callable[[str], str]) -> str:
    """"👎 @alice: *Outdated* — “their words”"."""
    reason = f": *{vote.reason.label}*" if vote.reason else ""
    note = f" — “{escape_mrkdwn(cut(vote.note, 300))}”" if vote.note else ""
    return f"👎 @{escape_mrkdwn(name_of(vote.user))}{reason}{note}"


def record_summary(record: TrainingRecord, name_of=lambda user: user) -> str:
    """One record in a line or three: number, who, question and answer (the recently approved list)."""
    flags = f" :warning: flagged: {', '.join(record.flags)}" if record.flags else ""
    return (f"*#{record.id}* from @{escape_mrkdwn(name_of(record.author))} ({record.source.value}){flags}\n"
            f"*Q:* {escape_mrkdwn(cut(record.prompt, 300))}\n*A:* {escape_mrkdwn(cut(record.response, 600))}")


def item_text(item: ReviewItem, name_of) -> str:
    record = item.record
    flags = f"\n:warning: flagged: {', '.join(record.flags)}" if record.flags else ""
    head = (f"*#{record.id}* · {SOURCES.get(record.source, record.source.value)} by "
            f"@{escape_mrkdwn(name_of(record.author))} · {record.created_at:%Y-%m-%d %H:%M} UTC{flags}")
    lines = [head, f"*Question:* {escape_mrkdwn(cut(record.prompt, 400))}"]
    if record.source is RecordSource.CORRECTION and item.turn is not None and item.turn.answer:
        lines += [f"*secbot answered:* {escape_mrkdwn(cut(item.turn.answer, 900))}",
                  f"*Correction:* {escape_mrkdwn(cut(record.response, 1200))}"]
    else:
        lines.append(f"*Answer:* {escape_mrkdwn(cut(record.response, 1800))}")
    return cut("\n".join(lines), SECTION_LIMIT)


def review_blocks(items: list[ReviewItem], total: int, offset: int, name_of=lambda user: user) -> list[dict]:
    if not items:
        return dicts([SectionBlock(text=MarkdownTextObject(text="No records wait for review."))])
    shown = f" · showing {offset + 1}–{offset + len(items)}" if total > len(items) else ""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=f"*{total} record(s) wait for review*{shown}"))]
    for item in items:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=item_text(item, name_of))))
        notes = [down_vote_line(v, name_of) for v in item.down_votes]
        if item.link:
            notes.append(f"<{item.link}|Open the thread>")
        if notes:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=cut(" · ".join(notes), SECTION_LIMIT))]))
        blocks.append(ActionsBlock(block_id=f"review-{item.record.id}", elements=[
            ButtonElement(action_id=REVIEW_APPROVE, value=str(item.record.id), style="primary", text="Approve"),
            ButtonElement(action_id=REVIEW_REJECT, value=str(item.record.id), style="danger", text="Reject…")]))
    pages = []
    if offset > 0:
        pages.append(ButtonElement(action_id=REVIEW_PAGE, value=str(max(offset - PAGE, 0)),
                                   text=f"← Previous {PAGE}"))
    if offset + len(items) < total:
        pages.append(ButtonElement(action_id=REVIEW_PAGE, value=str(offset + PAGE), text=f"Next {PAGE} →"))
    if pages:
        blocks.append(ActionsBlock(block_id="review-pages", elements=pages))
    return dicts(blocks)


def reject_modal(record_id: int, *, from_home: bool, response_url: str | None) -> dict:
    return View(
        type="modal", callback_id=REJECT_MODAL, title=f"Reject record #{record_id}"[:24], submit="Reject",
        close="Cancel",
        private_metadata=json.dumps({"record_id": record_id, "home": from_home, "response_url": response_url}),
        blocks=[InputBlock(block_id=REJECT_INPUT, label="Why? (the author and later reviewers see it)",
                           optional=True, element=PlainTextInputElement(
                               action_id=REJECT_INPUT, multiline=True, max_length=NOTE_LIMIT))]).to_dict()


class ReviewQueue:
    def __init__(self, store: Store, name_of=lambda user: user, link: Callable[[str, str], str | None] = None):
        self.store, self.name_of = store, name_of
        self.link = link or (lambda channel, ts: None)

    def items(self, offset: int = 0) -> tuple[list[ReviewItem], int, int]:
        """A page of pending records, oldest first; how many are pending in all; where the page
        starts (`offset`, brought back to the last page when records were reviewed meanwhile)."""
        total = self.store.records.counts()[RecordStatus.PENDING.value]
        offset = max(0, min(offset, max(total - 1, 0) // PAGE * PAGE))
        records = self.store.records.list(RecordStatus.PENDING, limit=PAGE, offset=offset)
        turns = {r.turn_id: self.store.conversations.get_turn(r.turn_id) for r in records if r.turn_id}
        votes = self.store.conversations.down_votes(list(turns))
        disputes = self.store.conversations.down_votes_on_memory_answers([r.id for r in records])
        items = []
        for record in records:
            turn = turns.get(record.turn_id)
            link = self.link(turn.channel, turn.answer_ts or turn.question_ts) if turn else None
            items.append(ReviewItem(record, turn, votes.get(record.turn_id, []) + disputes.get(record.id, []), link))
        return items, total, offset

    def blocks(self, offset: int = 0) -> list[dict]:
        items, total, offset = self.items(offset)
        return review_blocks(items, total, offset, self.name_of)
