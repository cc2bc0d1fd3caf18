"""ORM classes of ``pipeline.sqlite3`` — the one database of contimg.

All persistent state lives here, in one module, so the schema can be read in one
place; the Alembic migrations under ``engine/db/migrations`` create it. Screens and
HTTP handlers never touch these classes: they call the services in ``engine``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on SQLite (stored naive UTC, returned aware)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


# --------------------------------------------------------------------------- data in
class Hdf5File(Base):
    """One file seen in ``incoming/`` (or registered by hand), recorded once."""

    __tablename__ = "hdf5_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("observation_groups.id", ondelete="SET NULL"), index=True)
    subband: Mapped[int | None] = mapped_column(Integer)
    timestamp: Mapped[datetime | None]
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    mtime: Mapped[float] = mapped_column(Float, default=0.0)
    # registered | grouped | duplicate | stray | invalid
    status: Mapped[str] = mapped_column(String(16), default="registered", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    discovered_at: Mapped[datetime] = mapped_column(default=utcnow)


class ObservationGroup(Base):
    """One ~309 s observation (up to 16 subbands) and its single processing state."""

    __tablename__ = "observation_groups"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_time: Mapped[datetime] = mapped_column(index=True)
    dec_deg: Mapped[float | None] = mapped_column(Float)
    start_mjd: Mapped[float | None] = mapped_column(Float)
    end_mjd: Mapped[float | None] = mapped_column(Float)
    n_subbands: Mapped[int] = mapped_column(Integer, default=0)
    missing_subbands: Mapped[list[Any]] = mapped_column(default=list)
    is_calibrator: Mapped[bool] = mapped_column(Boolean, default=False)
    calibrator_name: Mapped[str | None] = mapped_column(String(64))
    # collecting (files still arriving) | ready (handed to the engine) | incomplete (gave up waiting)
    ingest_status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready", index=True)
    ready_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    wait_deadline: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    files: Mapped[list[Hdf5File]] = relationship(order_by=Hdf5File.subband)


class MeasurementSet(Base):
    """The MS converted from a group; its processing state is the group's."""

    __tablename__ = "measurement_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("observation_groups.id", ondelete="CASCADE"), unique=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    n_rows: Mapped[int | None] = mapped_column(Integer)
    n_channels: Mapped[int | None] = mapped_column(Integer)
    n_antennas: Mapped[int | None] = mapped_column(Integer)
    integration_time_s: Mapped[float | None] = mapped_column(Float)
    start_mjd: Mapped[float | None] = mapped_column(Float)
    end_mjd: Mapped[float | None] = mapped_column(Float)
    phase_ra_deg: Mapped[float | None] = mapped_column(Float)
    phase_dec_deg: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    cal_sets_applied: Mapped[list[Any]] = mapped_column(default=list)
    flagged_fraction: Mapped[float | None] = mapped_column(Float)
    qa_grade: Mapped[str | None] = mapped_column(String(8))
    qa_summary: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StateTransition(Base):
    """Audit trail: every state change of every group, in order."""

    __tablename__ = "state_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("observation_groups.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    job_id: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------- queue
class Job(Base):
    """The system of record for work: queue row, lease and outcome in one place."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(64), default="dsa110-pipeline")
    group_id: Mapped[str | None] = mapped_column(ForeignKey("observation_groups.id", ondelete="SET NULL"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    # queued | running | succeeded | failed | cancelled
    state: Mapped[str] = mapped_column(String(16), default="queued")
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    # times its holder died under it (host crash, killed worker): not attempts, but a poison-pill count
    interruptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_jobs_claim", "state", "priority", "run_after", "created_at"),
        Index("ix_jobs_created", "created_at"),
    )


class JobLog(Base):
    """Captured log lines of one job, tail-able by sequence number."""

    __tablename__ = "job_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(8), default="INFO")
    message: Mapped[str] = mapped_column(Text)


class Worker(Base):
    """A worker identity seen by the queue (for the dashboard's worker view)."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    task_count: Mapped[int] = mapped_column(Integer, default=0)
    current_job_id: Mapped[str | None] = mapped_column(String(32))
    stopped_at: Mapped[datetime | None]


class KeyValue(Base):
    """Small persistent switches (engine paused, last pointing, ...)."""

    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ListingVersion(Base):
    """Change counter of one REST listing, moved by SQLite triggers (engine/db/listing_triggers.py)."""

    __tablename__ = "listing_versions"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# --------------------------------------------------------------------------- calibration
class Calibrator(Base):
    __tablename__ = "calibrators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    alt_name: Mapped[str | None] = mapped_column(String(64))
    ra_deg: Mapped[float] = mapped_column(Float)
    dec_deg: Mapped[float] = mapped_column(Float, index=True)
    flux_jy: Mapped[float] = mapped_column(Float)
    spectral_index: Mapped[float | None] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(16), default="builtin")


class CalibrationSet(Base):
    """One solve: its validity window, QA metrics and status (active/retired/rejected)."""

    __tablename__ = "calibration_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    calibrator_name: Mapped[str] = mapped_column(String(64), index=True)
    group_id: Mapped[str | None] = mapped_column(ForeignKey("observation_groups.id", ondelete="SET NULL"))
    source_ms_path: Mapped[str] = mapped_column(Text)
    refant: Mapped[str | None] = mapped_column(String(32))
    solver_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dec_deg: Mapped[float] = mapped_column(Float)
    mid_mjd: Mapped[float] = mapped_column(Float, index=True)
    valid_start_mjd: Mapped[float] = mapped_column(Float)
    valid_end_mjd: Mapped[float] = mapped_column(Float)
    qa_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    qa_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tables: Mapped[list[CalibrationTable]] = relationship(back_populates="cal_set", cascade="all, delete-orphan")


class CalibrationTable(Base):
    __tablename__ = "calibration_tables"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("calibration_sets.id", ondelete="CASCADE"), index=True)
    table_type: Mapped[str] = mapped_column(String(16))  # bandpass | gain
    path: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cal_set: Mapped[CalibrationSet] = relationship(back_populates="tables")


# --------------------------------------------------------------------------- products
class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    group_id: Mapped[str | None] = mapped_column(ForeignKey("observation_groups.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32))
    ms_path: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text, unique=True)
    png_path: Mapped[str | None] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(16), default="builtin")
    data_column: Mapped[str | None] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mid_mjd: Mapped[float | None] = mapped_column(Float)
    pointing_ra_deg: Mapped[float | None] = mapped_column(Float)
    pointing_dec_deg: Mapped[float | None] = mapped_column(Float)
    noise_jy: Mapped[float | None] = mapped_column(Float)
    peak_flux_jy: Mapped[float | None] = mapped_column(Float)
    dynamic_range: Mapped[float | None] = mapped_column(Float)
    beam_major_arcsec: Mapped[float | None] = mapped_column(Float)
    beam_minor_arcsec: Mapped[float | None] = mapped_column(Float)
    beam_pa_deg: Mapped[float | None] = mapped_column(Float)
    qa_grade: Mapped[str | None] = mapped_column(String(8))
    qa_summary: Mapped[str | None] = mapped_column(Text)
    cal_table: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Source(Base):
    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(64), index=True)
    ra_deg: Mapped[float] = mapped_column(Float)
    dec_deg: Mapped[float] = mapped_column(Float, index=True)
    first_detected_at: Mapped[datetime | None]
    last_detected_at: Mapped[datetime | None]
    n_detections: Mapped[int] = mapped_column(Integer, default=0)
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    peak_flux_jy: Mapped[float | None] = mapped_column(Float)
    mean_flux_jy: Mapped[float | None] = mapped_column(Float)
    eta: Mapped[float | None] = mapped_column(Float)
    v: Mapped[float | None] = mapped_column(Float)
    chi2_nu: Mapped[float | None] = mapped_column(Float)
    modulation_index: Mapped[float | None] = mapped_column(Float)
    catalogue_match: Mapped[str | None] = mapped_column(String(64))
    latest_image_id: Mapped[str | None] = mapped_column(String(32))


class Photometry(Base):
    __tablename__ = "photometry"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    mjd: Mapped[float] = mapped_column(Float)
    ra_deg: Mapped[float | None] = mapped_column(Float)
    dec_deg: Mapped[float | None] = mapped_column(Float)
    peak_flux_jy: Mapped[float | None] = mapped_column(Float)
    flux_jy: Mapped[float] = mapped_column(Float)
    flux_err_jy: Mapped[float | None] = mapped_column(Float)
    local_rms_jy: Mapped[float | None] = mapped_column(Float)
    snr: Mapped[float | None] = mapped_column(Float)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_photometry_source_mjd", "source_id", "mjd"),)


# --------------------------------------------------------------------------- people and access
class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    email: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class ApiToken(Base):
    """Script tokens and login sessions; only hashes are stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="api")  # api | access | refresh
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


# --------------------------------------------------------------------------- dashboard features
class SavedQuery(Base):
    __tablename__ = "saved_queries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    filters: Mapped[str] = mapped_column(Text, default="[]")  # JSON: structured (field, operator, value) list
    query_string: Mapped[str] = mapped_column(Text, default="")
    target_type: Mapped[str] = mapped_column(String(16), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private", index=True)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    parameters: Mapped[list[Any]] = mapped_column(default=list)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    last_run_at: Mapped[datetime | None]
    forked_from: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SavedQueryFavorite(Base):
    __tablename__ = "saved_query_favorites"
    query_id: Mapped[str] = mapped_column(ForeignKey("saved_queries.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SavedQueryRun(Base):
    __tablename__ = "saved_query_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("saved_queries.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    row_count: Mapped[int] = mapped_column(Integer, default=0)


class BackupRecord(Base):
    __tablename__ = "backup_history"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    backup_path: Mapped[str] = mapped_column(Text)
    backup_type: Mapped[str] = mapped_column(String(16))  # full | incremental | differential | database_only
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    validation_status: Mapped[str | None] = mapped_column(String(16))
    validated_at: Mapped[datetime | None]
    checksum: Mapped[str | None] = mapped_column(String(128))
    parent_backup_id: Mapped[str | None] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    request_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # What the backup is for (database, caltables, config, full, incremental, differential): the
    # schedules, retention and the per-kind metrics go by it. started_at: when the work began.
    kind: Mapped[str | None] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime | None]


class RestoreJob(Base):
    __tablename__ = "restore_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    backup_id: Mapped[str] = mapped_column(ForeignKey("backup_history.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    items_restored: Mapped[int] = mapped_column(Integer, default=0)
    items_total: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    started_by: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)


class PipelineTrigger(Base):
    __tablename__ = "pipeline_triggers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    trigger_type: Mapped[str] = mapped_column(String(16))  # schedule | event | manual
    schedule: Mapped[str | None] = mapped_column(String(128))  # 5-field cron
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    schedule_description: Mapped[str | None] = mapped_column(Text)
    event_pattern: Mapped[str | None] = mapped_column(String(64))  # dashboard TriggerEvent
    action: Mapped[str] = mapped_column(String(64))  # pipeline id
    action_params: Mapped[str | None] = mapped_column(Text)  # JSON
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    max_concurrent: Mapped[int] = mapped_column(Integer, default=1)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    retry_delay_seconds: Mapped[int] = mapped_column(Integer, default=60)
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    updated_by: Mapped[str | None] = mapped_column(String(64))
    last_triggered_at: Mapped[datetime | None]


class TriggerExecution(Base):
    __tablename__ = "trigger_executions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    trigger_id: Mapped[str] = mapped_column(ForeignKey("pipeline_triggers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    event_type: Mapped[str] = mapped_column(String(64))
    event_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)


class ExportJob(Base):
    __tablename__ = "export_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    data_type: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    columns: Mapped[list[Any]] = mapped_column(default=list)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    row_count: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    file_path: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[Any]] = mapped_column(default=list)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_comments_target", "target_type", "target_id"),)


class Rating(Base):
    __tablename__ = "ratings"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32), default="overall")
    value: Mapped[int] = mapped_column(Integer)
    flag: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_ratings_target", "target_type", "target_id"),
        UniqueConstraint("target_type", "target_id", "username", "category", name="uq_rating_once"),
    )


class ReviewQueueItem(Base):
    __tablename__ = "review_queue"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(255))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    reason: Mapped[str | None] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("target_type", "target_id", name="uq_review_target"),)


class AlertPolicy(Base):
    __tablename__ = "alert_policies"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rules: Mapped[list[Any]] = mapped_column(default=list)
    overrides: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    channels: Mapped[list[Any]] = mapped_column(default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    for_seconds: Mapped[int] = mapped_column(Integer, default=0)
    repeat_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AlertSilence(Base):
    __tablename__ = "alert_silences"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    policy_id: Mapped[str] = mapped_column(ForeignKey("alert_policies.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """A fired monitoring alert (pointing change, stale calibration, ...)."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(64))
    calibrator_name: Mapped[str | None] = mapped_column(String(64))
    policy_id: Mapped[str | None] = mapped_column(ForeignKey("alert_policies.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    triggered_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))


class AlertDelivery(Base):
    """One attempt to tell a person about an alert: channel, where to, outcome, tries and the error."""

    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # webhook | slack | email
    target: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | failed | skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]


# --------------------------------------------------------------------------- retention and cleanup
class RetentionPolicy(Base):
    """What to do with which data when it gets old, big or many (engine/retention.py)."""

    __tablename__ = "retention_policies"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    data_type: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16), default="medium")
    status: Mapped[str] = mapped_column(String(16), default="active")
    rules: Mapped[list[Any]] = mapped_column(default=list)
    file_pattern: Mapped[str | None] = mapped_column(Text)
    min_file_size: Mapped[int | None] = mapped_column(Integer)
    max_file_size: Mapped[int | None] = mapped_column(Integer)
    exclude_patterns: Mapped[list[Any]] = mapped_column(default=list)
    require_confirmation: Mapped[bool] = mapped_column(Boolean, default=True)
    create_backup_before_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_executed_at: Mapped[datetime | None]


class RetentionExecution(Base):
    """One run of a policy or of a cleanup job, with what it did to each item."""

    __tablename__ = "retention_executions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    policy_id: Mapped[str | None] = mapped_column(String(32), index=True)  # kept when the policy is deleted
    cleanup_id: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    items_processed: Mapped[int] = mapped_column(Integer, default=0)
    items_affected: Mapped[int] = mapped_column(Integer, default=0)
    size_freed_bytes: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    actions: Mapped[list[Any]] = mapped_column(default=list)  # [{path, action, result, new_path?}]
    triggered_by: Mapped[str] = mapped_column(String(16), default="manual")
    triggered_by_user: Mapped[str | None] = mapped_column(String(64))


class CleanupJob(Base):
    """A one-off cleanup submitted from the dashboard's wizard; runs as a row in ``jobs``."""

    __tablename__ = "cleanup_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    request_key: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    action: Mapped[str] = mapped_column(String(16))
    audit_note: Mapped[str] = mapped_column(Text)
    submitted_by: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
    items_processed: Mapped[int | None] = mapped_column(Integer)
    bytes_freed: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------- task-queue workflows
class Workflow(Base):
    """A DAG of stage tasks spawned together (dashboard task queue, /absurd/workflows)."""

    __tablename__ = "workflows"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    tasks: Mapped[list[WorkflowTask]] = relationship(back_populates="workflow", cascade="all, delete-orphan",
                                                     order_by="WorkflowTask.position")


class WorkflowTask(Base):
    """One task of a workflow; its job is created only when every task it depends on has succeeded."""

    __tablename__ = "workflow_tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    task_name: Mapped[str] = mapped_column(String(64))
    job_type: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    depends_on: Mapped[list[Any]] = mapped_column(default=list)  # positions of the tasks it waits for
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | spawned | cancelled

    workflow: Mapped[Workflow] = relationship(back_populates="tasks")


# --------------------------------------------------------------------------- calibrator flux monitoring
class CalibratorFlux(Base):
    """A catalogue calibrator measured in a calibrated image: observed over catalogue flux, beam-corrected."""

    __tablename__ = "calibrator_flux"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calibrator_name: Mapped[str] = mapped_column(String(64), index=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[str | None] = mapped_column(String(64))
    mjd: Mapped[float] = mapped_column(Float, index=True)
    freq_hz: Mapped[float] = mapped_column(Float)
    observed_flux_jy: Mapped[float] = mapped_column(Float)  # corrected for the primary beam
    apparent_flux_jy: Mapped[float] = mapped_column(Float)  # as measured in the image
    catalog_flux_jy: Mapped[float] = mapped_column(Float)  # at freq_hz from the catalogue's power law
    flux_ratio: Mapped[float] = mapped_column(Float)
    beam_gain: Mapped[float] = mapped_column(Float)
    offset_deg: Mapped[float] = mapped_column(Float)
    snr: Mapped[float | None] = mapped_column(Float)
    cal_sets: Mapped[list[Any]] = mapped_column(default=list)
    phase_rms_deg: Mapped[float | None] = mapped_column(Float)
    amp_rms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- calibration set lifecycle
class CalibrationSetEvent(Base):
    """Who retired, reinstated or asked to re-solve a calibration set, when and why.

    Keyed by the set's name, not its row: a re-solve replaces the row of the same name,
    and the history must outlive it.
    """

    __tablename__ = "calibration_set_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_name: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(16))  # retired | reinstated | resolve_requested
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[str | None] = mapped_column(String(32))
