"""The App Home tab. Everyone sees what secbot is, which model answers, what it stores and how to
teach it; admins see the status, the review queue (paged), the latest 👎 with what analysts said
was wrong, team memory's most used and most disputed answers, and the recently approved records
(each with Revoke)."""

from __future__ import annotations

from slack_sdk.models.blocks import ButtonElement, ConfirmObject, MarkdownTextObject, SectionBlock

from secbot.bot.slack.admin import AdminCommands
from secbot.bot.slack.rendering import escape_mrkdwn
from secbot.bot.slack.review import REVIEW_REVOKE, ReviewQueue, cut, down_vote_line, record_summary
from secbot.bot.slack.views import SECTION_LIMIT, dicts, home_view
from secbot.feedback.store.entities import MemoryUsage, RecordStatus
from secbot.feedback.store.repositories import Store

ABOUT = """*{name}* is the security team's own assistant: it answers from the team's approved answers (team memory) and from a model the team runs and trains itself ({model}).

*Ask it* by mentioning @{name} in a channel, or here in *Messages*. Each thread is one conversation: follow-ups can say "it" and "that".

*What it keeps:* your questions, its answers and your feedback, with passwords, keys and tokens redacted first. Files are not read.

*Teach it:*
• :+1: a good answer: it can become a team answer once an admin approves it.
• :-1: a wrong one: secbot asks what was wrong (wrong, outdated, unsafe, too vague, other); admins see your reason.
• :pencil2: react, or press *Correct this answer*, and write the right answer. Once approved it answers at once from team memory ({memory} approved answer(s) today), and the nightly training learns it."""


def usage_line(usage: MemoryUsage) -> str:
    """"#12 · 34 answers, last 2026-12-02 · 👍 5 👎 1 · “question”" (App Home, `secbot memory stats`)."""
    record = usage.record
    last = f", last {record.last_hit_at:%Y-%m-%d}" if record.last_hit_at else ""
    state = "" if record.status is RecordStatus.APPROVED else f" · {record.status.value}"
    return (f"#{record.id} · {record.memory_hits} answer(s){last} · 👍 {usage.thumbs_up} 👎 {usage.thumbs_down}"
            f"{state} · “{cut(record.prompt, 80)}”")


def model_line(store: Store) -> str:
    active = store.runs.active_version()
    if active is None:
        return "the base model; no trained version has been promoted yet"
    when = f", promoted {active.promoted_at:%Y-%m-%d}" if active.promoted_at else ""
    return f"version {active.id}{when}"


class HomeTab:
    def __init__(self, store: Store, admin: AdminCommands, queue: ReviewQueue, assistant_name: str = "secbot",
                 name_of=lambda user: user, link=lambda channel, ts: None):
        self.store, self.admin, self.queue = store, admin, queue
        self.assistant_name, self.name_of, self.link = assistant_name, name_of, link

    def about(self) -> str:
        return ABOUT.format(name=self.assistant_name, model=model_line(self.store),
                            memory=self.store.memory.size())

    def view(self, user: str, offset: int = 0) -> dict:
        if not self.admin.is_admin(user):
            return home_view(self.about())
        return home_view(self.admin.status_text(), [self.queue.blocks(offset), self.recent_down_votes(),
                                                    self.memory_usage(), self.recent_approved()])

    def memory_usage(self, limit: int = 5) -> list[dict]:
        """Team memory's most used answers and its most disputed (👎 on the answers it gave)."""
        lines = []
        for title, by in (("*Team memory: most used*", "hits"), ("*Team memory: most disputed*", "down")):
            usage = self.store.records.memory_usage(limit, by)
            if usage:
                lines += [title, *(f"• {escape_mrkdwn(usage_line(u))}" for u in usage)]
        return dicts([SectionBlock(text=MarkdownTextObject(text=cut("\n".join(lines), SECTION_LIMIT)))]) if lines else []

    def recent_down_votes(self, limit: int = 5) -> list[dict]:
        """The newest 👎, each with the question and what the analyst said was wrong."""
        found = self.store.conversations.recent_down_votes(limit)
        if not found:
            return []
        lines = ["*Latest* :-1:"]
        for vote, turn in found:
            link = self.link(turn.channel, turn.answer_ts)
            where = f" · <{link}|thread>" if link else ""
            lines.append(f"• {down_vote_line(vote, self.name_of)} on “{escape_mrkdwn(cut(turn.question, 120))}”"
                         f" ({vote.created_at:%Y-%m-%d}){where}")
        return dicts([SectionBlock(text=MarkdownTextObject(text=cut("\n".join(lines), SECTION_LIMIT)))])

    def recent_approved(self, limit: int = 5) -> list[dict]:
        """The newest approved records, each with a Revoke button."""
        approved = self.store.records.list(RecordStatus.APPROVED)[-limit:][::-1]
        if not approved:
            return []
        blocks = [SectionBlock(text=MarkdownTextObject(text="*Recently approved*"))]
        for record in approved:
            blocks.append(SectionBlock(
                text=MarkdownTextObject(text=record_summary(record, self.name_of)),
                accessory=ButtonElement(
                    action_id=REVIEW_REVOKE, value=str(record.id), style="danger", text="Revoke",
                    confirm=ConfirmObject(title="Revoke this record?", confirm="Revoke", deny="Keep",
                                          text="It stops answering at once and never trains again."))))
        return dicts(blocks)
