"""Block Kit, built with slack_sdk's models (validated when turned into JSON): answer messages and
their feedback controls, what a 👎 asks, the correction and reason modals, and the App Home frame.
The review queue's blocks are `bot.slack.review`'s."""

from __future__ import annotations

import json

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextActionsBlock,
    ContextBlock,
    DividerBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    HeaderBlock,
    InputBlock,
    MarkdownBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from secbot.bot.slack.rendering import escape_mrkdwn, neutralise
from secbot.feedback.store.entities import DownReason

SECTION_LIMIT = 3000  # Slack's limit on a section's text
INPUT_LIMIT = 3000  # and on a plain_text_input's value
FEEDBACK, OPEN_CORRECTION = "feedback", "open_correction"
LEGACY_UP, LEGACY_DOWN = "feedback_up", "feedback_down"  # buttons on answers from earlier versions
CORRECTION_MODAL, CORRECTION_INPUT, CORRECTION_SHORTCUT = "correction_modal", "correction", "correct_answer"
DOWN_REASON, REASON_DETAIL, REASON_MODAL, REASON_INPUT = "down_reason", "reason_detail", "reason_modal", "reason"
NOTE_LIMIT = 500  # of an analyst's or reviewer's own words about an answer


def dicts(blocks: list[Block]) -> list[dict]:
    return [b.to_dict() for b in blocks]


def feedback_blocks(turn_id: int, footer: str | None = None) -> list[dict]:
    """What goes under an answer: where it came from, 👍/👎, and "Correct this answer"."""
    blocks: list[Block] = []
    if footer:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=escape_mrkdwn(footer))]))
    blocks += [
        ContextActionsBlock(block_id=f"feedback-{turn_id}", elements=[FeedbackButtonsElement(
            action_id=FEEDBACK,
            positive_button=FeedbackButtonObject(text="👍 Helpful", value=f"up:{turn_id}"),
            negative_button=FeedbackButtonObject(text="👎 Wrong", value=f"down:{turn_id}"))]),
        ActionsBlock(block_id=f"correct-{turn_id}", elements=[ButtonElement(
            action_id=OPEN_CORRECTION, value=str(turn_id), text=":pencil2: Correct this answer")]),
    ]
    return dicts(blocks)


def answer_blocks(markdown: str, turn_id: int | None = None, footer: str | None = None) -> list[dict]:
    """An answer (or a piece of one) as a `markdown` block; the last piece carries feedback."""
    body = dicts([MarkdownBlock(text=neutralise(markdown) or " ")])
    return body + (feedback_blocks(turn_id, footer) if turn_id is not None else [])


def correction_offer_blocks(turn_id: int) -> list[dict]:
    """The ephemeral reply to a correction reaction (reactions carry no trigger_id)."""
    return dicts([
        SectionBlock(text=MarkdownTextObject(text="Want to teach secbot the right answer?")),
        ActionsBlock(elements=[ButtonElement(action_id=OPEN_CORRECTION, value=str(turn_id), style="primary",
                                             text="Correct this answer")])])


def correction_modal(turn_id: int, channel: str, question: str, answer: str) -> dict:
    """The correction form, pre-filled with the answer; an answer longer than the box holds is
    said to be cut, never cut silently."""
    cut = []
    if len(answer) > INPUT_LIMIT:
        cut = [SectionBlock(text=MarkdownTextObject(
            text=f":warning: The answer is {len(answer):,} characters; this box holds {INPUT_LIMIT:,}, so only its "
                 "first part is filled in below. Your correction replaces the whole answer: write the full answer "
                 "you want, within that length (the original stays in the thread)."))]
    return View(
        type="modal", callback_id=CORRECTION_MODAL, title="Correct this answer", submit="Save correction",
        close="Cancel", private_metadata=json.dumps({"turn_id": turn_id, "channel": channel}),
        blocks=[
            SectionBlock(text=MarkdownTextObject(
                text=f"*Question*\n{escape_mrkdwn(question)[:SECTION_LIMIT - 20]}")),
            *cut,
            InputBlock(block_id=CORRECTION_INPUT, label="The answer secbot should have given",
                       element=PlainTextInputElement(action_id=CORRECTION_INPUT, multiline=True,
                                                     initial_value=answer[:INPUT_LIMIT] or None,
                                                     max_length=INPUT_LIMIT)),
            ContextBlock(elements=[MarkdownTextObject(
                text="Your correction becomes a training record (secrets are redacted). Once approved it "
                     "answers at once from team memory and the next training run learns it.")]),
        ]).to_dict()


def down_reason_blocks(turn_id: int, chosen: DownReason | None = None, note: str | None = None) -> list[dict]:
    """The ephemeral reply to a 👎: what was wrong (one click each), and ✏️ correct; `note` says
    what the 👎 did (a team answer sent back to review). Once a reason is chosen, it says so and
    offers to add details."""
    correct = ButtonElement(action_id=OPEN_CORRECTION, value=str(turn_id), style="primary",
                            text=":pencil2: Correct this answer")
    if chosen is None:
        text = "Thanks. *What was wrong with this answer?* The admins see your reason when they review it."
        if note:
            text += f"\n{escape_mrkdwn(note)}"
        buttons = [ButtonElement(action_id=DOWN_REASON, value=f"{reason.value}:{turn_id}",
                                 text=reason.label + ("…" if reason is DownReason.OTHER else ""))
                   for reason in DownReason]
        return dicts([SectionBlock(text=MarkdownTextObject(text=text)),
                      ActionsBlock(block_id=f"reasons-{turn_id}", elements=buttons),
                      ActionsBlock(block_id=f"reason-correct-{turn_id}", elements=[correct])])
    text = (f"Noted: *{chosen.label}*. The admins see it when they review. Add details, or teach secbot "
            "the right answer.")
    return dicts([SectionBlock(text=MarkdownTextObject(text=text)),
                  ActionsBlock(block_id=f"reason-next-{turn_id}", elements=[
                      ButtonElement(action_id=REASON_DETAIL, value=f"{chosen.value}:{turn_id}", text="Add details"),
                      correct])])


def reason_modal(turn_id: int, channel: str, reason: DownReason, question: str) -> dict:
    """Their own words about what was wrong (optional; for "other" it is the reason)."""
    return View(
        type="modal", callback_id=REASON_MODAL, title="What was wrong?", submit="Send", close="Cancel",
        private_metadata=json.dumps({"turn_id": turn_id, "channel": channel, "reason": reason.value}),
        blocks=[
            SectionBlock(text=MarkdownTextObject(
                text=f"*Question*\n{escape_mrkdwn(question)[:SECTION_LIMIT - 20]}")),
            InputBlock(block_id=REASON_INPUT, label=f"{reason.label}: what should the admins know?", optional=True,
                       element=PlainTextInputElement(action_id=REASON_INPUT, multiline=True, max_length=NOTE_LIMIT)),
            ContextBlock(elements=[MarkdownTextObject(
                text="Secrets are redacted before it is stored. To give the right answer, use "
                     ":pencil2: *Correct this answer* instead.")]),
        ]).to_dict()


def message_modal(title: str, text: str) -> dict:
    return View(type="modal", title=title[:24], blocks=[
        SectionBlock(text=MarkdownTextObject(text=escape_mrkdwn(text)))]).to_dict()


def home_view(status: str, sections: list[list[dict]] = ()) -> dict:
    """The App Home: a header, what secbot is (or its status, for admins), then each section
    (already blocks) after a divider."""
    blocks = [HeaderBlock(text=PlainTextObject(text="secbot")),
              SectionBlock(text=MarkdownTextObject(text=status[:SECTION_LIMIT]))]
    data = View(type="home", blocks=blocks).to_dict()
    for section in sections:
        if section:
            data["blocks"] += [DividerBlock().to_dict(), *section]
    return data


GREETING = "Hi! I am {name}, the security team's own assistant. What would you like to know?"


def suggested_prompts(settings) -> list[dict]:
    """Up to four of SECBOT_SUGGESTED_PROMPTS, as Slack's suggested prompts."""
    return [{"title": p[:75], "message": p} for p in settings.slack.suggested_prompts if p][:4]
