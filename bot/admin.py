"""`/secbot` for admins: help, status, retrain, rollback, review, export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

from secbot.bot.slack_views import review_blocks
from secbot.feedback.entities import RecordStatus
from secbot.feedback.store import Store
from secbot.model.records import write_records

HELP = """*secbot admin commands*
• `/secbot status` – active model version, its metrics, records by status, last and next run
• `/secbot retrain` – freeze approved records and train a candidate now
• `/secbot rollback [version]` – make an earlier version active again
• `/secbot review` – records waiting for approval
• `/secbot export` – upload the approved dataset (THUDM JSON lines)"""

REFUSAL = "Sorry, `/secbot {command}` is for secbot admins. Ask one of them, or try `/secbot help`."


class LoopControl(Protocol):
    """The learning loop as the admin commands drive it."""

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
    def __init__(self, store: Store, admins, loop: LoopControl | None = None):
        self.store = store
        self.admins = set(admins)
        self.loop = loop or NoLoop()

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

    def review(self, limit: int = 10) -> list[dict]:
        pending = self.store.records.list(RecordStatus.PENDING, limit=limit)
        return review_blocks(pending, self.store.records.counts()["pending"])

    def export_file(self) -> tuple[Path, int]:
        path = Path(tempfile.mkdtemp()) / "secbot-approved.jsonl"
        records = [r.as_record() for r in self.store.records.list(RecordStatus.APPROVED)]
        return path, write_records(path, records)

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
            if len(words) > 1 and not words[1].isdigit():
                return {"text": "Usage: `/secbot rollback [version number]`"}
            return {"text": self.loop.rollback(int(words[1]) if len(words) > 1 else None, user)}
        if command == "review":
            blocks = self.review()
            return {"text": "Records waiting for review", "blocks": blocks}
        return {"text": f"Unknown command `{command}`.\n{HELP}"}
