"""Training runs, the model versions they produce, and the leases that keep runs one at a time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from secbot.feedback.errors import StoreError
from secbot.feedback.store.db import Database
from secbot.feedback.store.entities import Run, RunState, Version, VersionStatus
from secbot.feedback.store.owners import owner_alive, this_process
from secbot.feedback.store.schema import LockRow, RunRow, SnapshotRow, VersionRow, utcnow


def _run(row: RunRow) -> Run:
    return Run(id=row.id, state=row.state, snapshot_id=row.snapshot_id, method=row.method,
               hyperparameters=dict(row.hyperparameters or {}), metrics=dict(row.metrics or {}),
               log_path=row.log_path, requested_by=row.requested_by, error=row.error,
               report=dict(row.report or {}), reported_at=row.reported_at, created_at=row.created_at,
               started_at=row.started_at, finished_at=row.finished_at, heartbeat_at=row.heartbeat_at)


def _version(row: VersionRow, run_metrics: dict | None) -> Version:
    return Version(id=row.id, adapter_path=row.adapter_path, base_model=row.base_model, run_id=row.run_id,
                   status=row.status, metrics=dict((run_metrics or {}).get("candidate", {})),
                   created_at=row.created_at, promoted_at=row.promoted_at, promoted_by=row.promoted_by)


VERSION_COLUMNS = (VersionRow, RunRow.metrics)


class Runs:
    def __init__(self, db: Database):
        self.db = db

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, *, snapshot_id: int | None, method: str, hyperparameters: dict,
                   requested_by: str | None, queued_run: int | None = None, owner: str | None = None) -> Run:
        """Start a run now, or start the queued run `queued_run`."""
        with self.db.session() as s:
            run = s.get(RunRow, queued_run) if queued_run is not None else None
            if queued_run is not None and (run is None or run.state is not RunState.QUEUED):
                raise StoreError(f"run {queued_run} is not queued")
            if run is None:
                run = RunRow(requested_by=requested_by)
                s.add(run)
            run.state, run.snapshot_id, run.method = RunState.RUNNING, snapshot_id, method
            run.hyperparameters, run.started_at, run.heartbeat_at = hyperparameters, utcnow(), utcnow()
            run.owner = owner or this_process()
            s.flush()
            return _run(run)

    def enqueue_run(self, *, method: str, requested_by: str | None) -> Run | None:
        """Queue a run for the training worker; None when one is already queued or running."""
        with self.db.session() as s:
            busy = s.scalar(select(RunRow.id).where(RunRow.state.in_([RunState.QUEUED, RunState.RUNNING])))
            if busy is not None:
                return None
            run = RunRow(state=RunState.QUEUED, method=method, hyperparameters={}, requested_by=requested_by)
            s.add(run)
            s.flush()
            return _run(run)

    def next_queued_run(self) -> Run | None:
        with self.db.reading() as s:
            row = s.scalar(select(RunRow).where(RunRow.state == RunState.QUEUED).order_by(RunRow.id))
            return _run(row) if row else None

    def update_run(self, run_id: int, **fields) -> Run:
        with self.db.session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise StoreError(f"no training run {run_id}")
            for key, value in fields.items():
                setattr(run, key, value)
            if "state" in fields and RunState(fields["state"]).finished:
                run.finished_at = utcnow()
            return _run(run)

    def heartbeat(self, run_id: int) -> None:
        with self.db.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=utcnow()))

    def get_run(self, run_id: int) -> Run | None:
        with self.db.reading() as s:
            row = s.get(RunRow, run_id)
            return _run(row) if row else None

    def runs(self, limit: int = 20) -> list[Run]:
        """The newest runs first."""
        with self.db.reading() as s:
            return [_run(r) for r in s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit))]

    def fail_stale_runs(self, older_than: timedelta) -> list[int]:
        """Runs still marked running whose process died: its owner is gone (told at once on the
        owner's host), or its heartbeat stopped for `older_than` (any host)."""
        with self.db.session() as s:
            running = list(s.scalars(select(RunRow).where(RunRow.state == RunState.RUNNING)))
            cutoff = utcnow() - older_than
            failed = []
            for run in running:
                if owner_alive(run.owner) is False:
                    why = f"its process {run.owner} is gone (killed or crashed)"
                elif run.heartbeat_at is None or run.heartbeat_at < cutoff:
                    seen = f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if run.heartbeat_at else "its start"
                    why = f"no heartbeat since {seen} from {run.owner or 'its process'}"
                else:
                    continue
                run.state, run.finished_at = RunState.FAILED, utcnow()
                run.error = f"{why}; marked failed, so later runs can start."
                failed.append(run.id)
            return failed

    def unreported_runs(self) -> list[Run]:
        """Finished runs whose report has not reached the admins yet."""
        with self.db.reading() as s:
            rows = s.scalars(select(RunRow).where(RunRow.reported_at.is_(None),
                                                  RunRow.state.in_([st for st in RunState if st.finished]))
                             .order_by(RunRow.id))
            return [_run(r) for r in rows]

    def claim_report(self, run_id: int) -> bool:
        """True for exactly one caller: the one that will deliver this run's report."""
        with self.db.session() as s:
            done = s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.reported_at.is_(None))
                             .values(reported_at=utcnow()))
            return done.rowcount == 1

    def trained_record_ids(self) -> set[int]:
        """Record ids the active version was trained on (empty when none was trained)."""
        return self._active_snapshot(SnapshotRow.record_ids)

    def trained_label_ids(self) -> set[int]:
        """Labelled completions the active version's preference stage learned from."""
        return self._active_snapshot(SnapshotRow.label_ids)

    def _active_snapshot(self, column) -> set[int]:
        with self.db.reading() as s:
            ids = s.scalar(select(column).join(RunRow, RunRow.snapshot_id == SnapshotRow.id)
                           .join(VersionRow, VersionRow.run_id == RunRow.id)
                           .where(VersionRow.status == VersionStatus.ACTIVE))
            return set(ids or ())

    # -- versions ------------------------------------------------------------------------------
    def _versions(self, s: Session):
        return select(*VERSION_COLUMNS).outerjoin(RunRow, RunRow.id == VersionRow.run_id)

    def add_version(self, *, base_model: str, adapter_path: str | None, run_id: int | None) -> Version:
        """A candidate version (trained, not yet serving)."""
        with self.db.session() as s:
            row = VersionRow(base_model=base_model, adapter_path=adapter_path, run_id=run_id,
                             status=VersionStatus.CANDIDATE)
            s.add(row)
            s.flush()
        return self.get_version(row.id)

    def active_version(self) -> Version | None:
        with self.db.reading() as s:
            row = s.execute(self._versions(s).where(VersionRow.status == VersionStatus.ACTIVE)).first()
            return _version(*row) if row else None

    def versions(self) -> list[Version]:
        with self.db.reading() as s:
            return [_version(*row) for row in s.execute(self._versions(s).order_by(VersionRow.id))]

    def get_version(self, version_id: int) -> Version | None:
        with self.db.reading() as s:
            row = s.execute(self._versions(s).where(VersionRow.id == version_id)).first()
            return _version(*row) if row else None

    def promote(self, version_id: int, by: str) -> Version:
        """Make `version_id` the active version, retiring the current one, in one transaction."""
        with self.db.session() as s:
            version = s.get(VersionRow, version_id)
            if version is None:
                raise StoreError(f"there is no model version {version_id}")
            current = s.scalar(select(VersionRow).filter_by(status=VersionStatus.ACTIVE))
            if current is not None and current.id != version_id:
                current.status = VersionStatus.RETIRED
                s.flush()  # the database allows one active version; retire first
            version.status = VersionStatus.ACTIVE
            version.promoted_at, version.promoted_by = utcnow(), by
        return self.get_version(version_id)

    def retire_active(self) -> None:
        """Leave no version active: the base serves."""
        with self.db.session() as s:
            s.execute(update(VersionRow).where(VersionRow.status == VersionStatus.ACTIVE)
                      .values(status=VersionStatus.RETIRED))

    # -- locks ---------------------------------------------------------------------------------
    def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> bool:
        """Take the named lease unless another owner holds an unexpired one."""
        now = utcnow()
        with self.db.session() as s:
            lock = s.get(LockRow, name, with_for_update=True)
            if lock is None:
                try:
                    with s.begin_nested():
                        s.add(LockRow(name=name, owner=owner, expires_at=now + ttl))
                    return True
                except IntegrityError:
                    return False
            if lock.owner != owner and lock.expires_at > now and owner_alive(lock.owner) is not False:
                return False
            lock.owner, lock.expires_at = owner, now + ttl
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self.db.session() as s:
            s.execute(delete(LockRow).where(LockRow.name == name, LockRow.owner == owner))

    def lock_owner(self, name: str) -> str | None:
        with self.db.reading() as s:
            lock = s.get(LockRow, name)
            return lock.owner if lock and lock.expires_at > utcnow() else None
