"""Block Kit: answer messages with feedback buttons, the correction modal, review and home."""

from __future__ import annotations

import json

from secbot.feedback.entities import TrainingRecord

SECTION_LIMIT = 3000  # Slack's limit on a section block's text
FEEDBACK_UP, FEEDBACK_DOWN, OPEN_CORRECTION = "feedback_up", "feedback_down", "open_correction"
REVIEW_APPROVE, REVIEW_REJECT = "review_approve", "review_reject"
CORRECTION_MODAL, CORRECTION_INPUT, CORRECTION_SHORTCUT = "correction_modal", "correction", "correct_answer"


def answer_blocks(text: str, turn_id: int, footer: str | None = None) -> list[dict]:
    context = [{"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]}] if footer else []
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT] or " "}},
        *context,
        {"type": "actions", "block_id": f"feedback-{turn_id}", "elements": [
            {"type": "button", "action_id": FEEDBACK_UP, "value": str(turn_id),
             "text": {"type": "plain_text", "text": ":+1: Helpful", "emoji": True}},
            {"type": "button", "action_id": FEEDBACK_DOWN, "value": str(turn_id),
             "text": {"type": "plain_text", "text": ":-1: Wrong", "emoji": True}},
            {"type": "button", "action_id": OPEN_CORRECTION, "value": str(turn_id),
             "text": {"type": "plain_text", "text": ":pencil2: Correct this answer", "emoji": True}},
        ]},
    ]


def correction_offer_blocks(turn_id: int) -> list[dict]:
    """The ephemeral reply to a correction reaction (reactions carry no trigger_id)."""
    return [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "Want to teach secbot the right answer?"}},
        {"type": "actions", "elements": [
            {"type": "button", "action_id": OPEN_CORRECTION, "value": str(turn_id), "style": "primary",
             "text": {"type": "plain_text", "text": "Correct this answer"}}]},
    ]


def correction_modal(turn_id: int, channel: str, question: str, answer: str) -> dict:
    return {
        "type": "modal", "callback_id": CORRECTION_MODAL,
        "private_metadata": json.dumps({"turn_id": turn_id, "channel": channel}),
        "title": {"type": "plain_text", "text": "Correct this answer"},
        "submit": {"type": "plain_text", "text": "Save correction"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": f"*Question*\n{question[:SECTION_LIMIT - 20]}"}},
            {"type": "input", "block_id": CORRECTION_INPUT,
             "label": {"type": "plain_text", "text": "The answer secbot should have given"},
             "element": {"type": "plain_text_input", "action_id": CORRECTION_INPUT, "multiline": True,
                         "initial_value": answer[:3000], "max_length": 3000}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                "Your correction becomes a training record (secrets are redacted). "
                "It is used for training once approved."}]},
        ],
    }


def record_summary(record: TrainingRecord) -> str:
    prompt = record.prompt if len(record.prompt) < 300 else record.prompt[:297] + "…"
    response = record.response if len(record.response) < 600 else record.response[:597] + "…"
    flags = f" :warning: flagged: {', '.join(record.flags)}" if record.flags else ""
    return (f"*#{record.id}* from <@{record.author}> ({record.source.value}){flags}\n"
            f"*Q:* {prompt}\n*A:* {response}")


def review_blocks(records: list[TrainingRecord], total_pending: int) -> list[dict]:
    if not records:
        return [{"type": "section", "text": {"type": "mrkdwn", "text": "No records wait for review."}}]
    blocks = [{"type": "section", "text": {"type": "mrkdwn",
                                           "text": f"*{total_pending} record(s) wait for review*"}}]
    for record in records:
        blocks += [
            {"type": "section", "text": {"type": "mrkdwn", "text": record_summary(record)}},
            {"type": "actions", "block_id": f"review-{record.id}", "elements": [
                {"type": "button", "action_id": REVIEW_APPROVE, "value": str(record.id), "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": REVIEW_REJECT, "value": str(record.id), "style": "danger",
                 "text": {"type": "plain_text", "text": "Reject"}}]},
        ]
    return blocks


def home_view(status: str, review: list[dict] | None) -> dict:
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "secbot"}},
              {"type": "section", "text": {"type": "mrkdwn", "text": status}}]
    if review is not None:
        blocks += [{"type": "divider"}] + review
    return {"type": "home", "blocks": blocks}
