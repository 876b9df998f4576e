"""`/secbot` for admins: help, status, retrain, rollback, review (approve, reject), revoke, export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

from secbot.bot.slack.review import PAGE, ReviewQueue
from secbot.feedback.errors import StoreError
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.store.entities import RecordStatus
from secbot.feedback.store.repositories import Store
from secbot.model.training.record_formats import write_records

HELP = """*secbot admin commands*
• `/secbot status` – active model version, its metrics, records by status, last and next run
• `/secbot retrain` – freeze approved records and train a candidate now
• `/secbot rollback [version]` – make an earlier version active again
• `/secbot review [page]` – records waiting for approval, ten a page
• `/secbot approve <record>` / `/secbot reject <record> [why]` – decide one without the buttons
• `/secbot revoke <record>` – take an approved record back (out of memory and training)
• `/secbot export` – upload the approved dataset (THUDM JSON lines)"""

REFUSAL = "Sorry, `/secbot {command}` is for secbot admins. Ask one of them, or try `/secbot help`."


class LoopControl(Protocol):
    """The learning loop as the admin commands drive it (`feedback.learning.loop.LearningLoop`)."""

    def retrain(self, requested_by: str) -> str: ...

    def rollback(self, version_id: int | None, requested_by: str) -> str: ...

    def status(self) -> dict: ...


class NoLoop:
    """Used when this process does not run the learning loop."""

    def retrain(self, requested_by: str) -> str:
        return "Retraining is not enabled in this bot process."

    def rollback(self, version_id, requested_by: str) -> str:
        return "Rollback is not enabled in this bot process."

    def status(self) -> dict:
        return {}


class AdminCommands:
    def __init__(self, store: Store, admins, loop: LoopControl | None = None, queue: ReviewQueue | None = None,
                 intake: Intake | None = None):
        self.store = store
        self.admins = set(admins)
        self.loop = loop or NoLoop()
        self.queue = queue or ReviewQueue(store)
        self.intake = intake or Intake(store)

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def status_text(self) -> str:
        active = self.store.runs.active_version()
        if active is None:
            model = "*Active model:* the base model (no trained version promoted yet)"
        else:
            m = active.metrics
            metrics = []
            if m.get("heldout"):
                metrics.append(f"held-out ROUGE-L {m['heldout']['rouge-l']:.1f}, BLEU-4 {m['heldout']['bleu-4']:.1f}")
            if "identity_heldout" in m:
                metrics.append(f"identity {m['identity_heldout']:.0f}%")
            if m.get("corrections", {}).get("samples"):
                metrics.append(f"corrections {m['corrections']['exact_match']:.0f}% exact")
            model = (f"*Active model:* version {active.id} "
                     f"({Path(active.adapter_path).name if active.adapter_path else 'base'})"
                     + (f"\n*Metrics:* {'; '.join(metrics)}" if metrics else ""))
        counts = self.store.records.counts()
        records = ", ".join(f"{n} {status}" for status, n in counts.items())
        memory = f"\n*Team memory:* {self.store.memory.size()} approved record(s) answer at once"
        schedule = self.loop.status()
        runs = (f"\n*Last run:* {schedule.get('last_run') or 'none yet'}"
                f"\n*Next run:* {schedule.get('next_run') or 'not scheduled'}")
        return f"{model}\n*Training records:* {records}{memory}{runs}"

    def approve(self, record_id: int, user: str) -> str:
        try:
            record = self.store.records.review(record_id, user, approve=True)
        except StoreError as exc:
            return f"Nothing approved: {exc}."
        return f"Record #{record.id} approved: it answers from team memory now and the next training run uses it."

    def reject(self, record_id: int, user: str, why: str | None = None) -> str:
        try:
            record = self.intake.reject(record_id, user, why)
        except StoreError as exc:
            return f"Nothing rejected: {exc}."
        return f"Record #{record.id} rejected" + (f": {record.review_note}" if record.review_note else ".")

    def export_file(self) -> tuple[Path, int]:
        path = Path(tempfile.mkdtemp()) / "secbot-approved.jsonl"
        records = [r.as_record() for r in self.store.records.list(RecordStatus.APPROVED)]
        return path, write_records(path, records)

    def revoke(self, record_id: int, user: str) -> str:
        try:
            record = self.store.records.revoke(record_id, user)
        except StoreError as exc:
            return f"Nothing revoked: {exc}."
        return (f"Record #{record.id} is revoked: it no longer answers from team memory and no later "
                "training run uses it.")

    def run(self, text: str, user: str) -> dict:
        """The reply to `/secbot <text>` as `respond()` arguments (text and/or blocks)."""
        words = text.split()
        command = words[0].lower() if words else "help"
        if command == "help":
            return {"text": HELP}
        if not self.is_admin(user):
            return {"text": REFUSAL.format(command=command)}
        if command == "status":
            return {"text": self.status_text()}
        if command == "retrain":
            return {"text": self.loop.retrain(user)}
        if command == "rollback":
            if len(words) > 2 or (len(words) == 2 and not words[1].lstrip("v").isdigit()):
                return {"text": "Usage: `/secbot rollback [version number]`"}
            return {"text": self.loop.rollback(int(words[1].lstrip("v")) if len(words) > 1 else None, user)}
        if command == "review":
            if len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
                return {"text": "Usage: `/secbot review [page number]`"}
            page = int(words[1]) if len(words) == 2 else 1
            return {"text": "Records waiting for review", "blocks": self.queue.blocks((max(page, 1) - 1) * PAGE)}
        if command in ("revoke", "approve", "reject"):
            if len(words) < 2 or not words[1].lstrip("#").isdigit() or (command != "reject" and len(words) > 2):
                extra = " [why]" if command == "reject" else ""
                return {"text": f"Usage: `/secbot {command} <record number>{extra}`, e.g. `/secbot {command} 42`"}
            record_id = int(words[1].lstrip("#"))
            if command == "reject":
                return {"text": self.reject(record_id, user, text.split(None, 2)[2] if len(words) > 2 else None)}
            return {"text": (self.revoke if command == "revoke" else self.approve)(record_id, user)}
        return {"text": f"Unknown command `{command}`.\n{HELP}"}
