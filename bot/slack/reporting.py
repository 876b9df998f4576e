"""Run reports to the admin channel: the runs this process made, and those the training worker
made (delivered from the store, each once). Nothing is posted in a workspace that revoked
secbot's token or uninstalled it."""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from secbot.feedback.learning.loop import deliver_reports
from secbot.feedback.learning.periodic import Periodic
from secbot.feedback.learning.report import RunReport, render
from secbot.feedback.store.repositories import Store

log = logging.getLogger(__name__)


class SlackReporter:
    """The learning loop's `Reporter` for the bot: posts to SECBOT_ADMIN_CHANNEL."""

    def __init__(self, client: WebClient, store: Store, channel: str | None, team: str | None = None):
        self.client, self.store, self.channel = client, store, channel
        self.team = team  # the workspace the token belongs to (set at start-up)

    def _silenced(self) -> bool:
        reason = self.store.events.revoked(self.team)
        if reason:
            log.warning("not posting to the admin channel: %s in workspace %s", reason, self.team)
        return bool(reason)

    def run_finished(self, report: RunReport) -> None:
        if report.run_id is not None and not self.store.runs.claim_report(report.run_id):
            return  # another process delivered it
        self.post(report)

    def post(self, report: RunReport) -> None:
        if not self.channel or self._silenced():
            log.info("run report (not posted): %s", report.summary)
            return
        self.client.chat_postMessage(channel=self.channel, text=report.summary,
                                     blocks=[{"type": "markdown", "text": render(report)}])
        if report.loss_curve:
            self.client.files_upload_v2(channel=self.channel, file=report.loss_curve,
                                        filename=f"run-{report.run_id}-loss.png",
                                        title=f"Run {report.run_id} loss curve")

    def job_failed(self, error: BaseException) -> None:
        if self.channel and not self._silenced():
            self.client.chat_postMessage(channel=self.channel,
                                         text=f":warning: The nightly retraining job failed: {error}")

    def deliver_pending(self) -> int:
        """Post the reports of runs another process (the training worker) finished."""
        return deliver_reports(self.store, self.post)

    def start(self, periodic: Periodic, seconds: float = 15.0) -> None:
        periodic.every(seconds, self.deliver_pending, "secbot-run-reports")
