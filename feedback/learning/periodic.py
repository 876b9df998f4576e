"""Work a process repeats every so often (follow the active version, deliver run reports, forget
old Slack event ids), on an in-memory APScheduler of its own.

These jobs belong to one process and die with it, so they use the memory job store; the nightly
retraining job is the one job kept in the database (`feedback.learning.schedule`). A failed
round is logged by APScheduler and the next one comes anyway; a round still running when the
next is due is not started twice (`max_instances=1`, `coalesce=True`).
"""

from __future__ import annotations

from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler


class Periodic:
    """This process's repeated jobs; `every` adds one, `stop` ends them all."""

    def __init__(self):
        self.scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                           "misfire_grace_time": None})
        self.scheduler.start()

    def every(self, seconds: float, task: Callable[[], object], name: str) -> None:
        self.scheduler.add_job(task, "interval", seconds=seconds, id=name, name=name, replace_existing=True)

    def names(self) -> list[str]:
        return sorted(job.id for job in self.scheduler.get_jobs())

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
