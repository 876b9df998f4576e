"""The nightly retraining job on APScheduler 3.x, persisted in the store's database.

One scheduler per job store: run it in one process (`SECBOT_SCHEDULER=1`, the default for
`secbot serve`; set 0 on any other replica). The database lock still keeps retraining to one
run at a time if two schedulers ever fire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)
JOB_ID = "secbot-nightly-retrain"
DEFAULT_CRON = "0 2 * * *"  # 02:00 every day
TABLE = "apscheduler_jobs"  # kept out of Alembic's autogenerate (feedback.store.migrate.NOT_OURS)

_run: Callable[[], object] | None = None


def nightly_retrain() -> None:
    """The scheduled job (module-level, so the job store can name it)."""
    if _run is None:
        raise RuntimeError("the retraining job fired before the pipeline was attached")
    _run()


def start_scheduler(db_url: str, cron: str, timezone: str, run: Callable[[], object],
                    on_error: Callable[[BaseException], None] | None = None) -> BackgroundScheduler:
    """Start the scheduler with the nightly job registered once (replacing an older definition)."""
    global _run
    _run = run
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=db_url, tablename=TABLE)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 6 * 3600},
        timezone=timezone)
    if on_error is not None:
        def listener(event: JobExecutionEvent) -> None:
            if event.job_id == JOB_ID and event.exception is not None:
                on_error(event.exception)
        scheduler.add_listener(listener, EVENT_JOB_ERROR)
    scheduler.start()
    scheduler.add_job(nightly_retrain, CronTrigger.from_crontab(cron, timezone=timezone), id=JOB_ID,
                      name="nightly retraining", replace_existing=True)
    return scheduler


def next_run(scheduler: BackgroundScheduler | None):
    job = scheduler.get_job(JOB_ID) if scheduler else None
    return job.next_run_time if job else None
