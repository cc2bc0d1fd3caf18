"""Ingest: watch ``incoming/``, record each file once, group subbands, hand ready groups to the engine.

A file is read only once its size and mtime have stayed unchanged for
``ingest.stable_s`` (a half-written file is never opened). Each file is recorded in
``hdf5_files`` exactly once, so restarts are idempotent. Subbands whose timestamps
lie within ``ingest.group_tolerance_s`` of a group's first file join that group.
A group with all 16 subbands is ready at once; an incomplete one waits
``ingest.incomplete_wait_s`` and then proceeds with the missing subbands recorded
(if at least ``ingest.min_subbands`` are present) or is marked incomplete with a
reason. Nothing is ever deleted: bad files are recorded with the reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine import events
from engine.db import Database
from engine.db import models as m
from engine.errors import PermanentStageError
from engine.events import EventBus
from engine.logs import get_logger
from engine.processing import states
from engine.processing.transitions import transition
from engine.subbands import SubbandNameError, parse_subband_filename
from engine.units import cancel_and_wait

log = get_logger("ingest")
N_SUBBANDS = 16
SUFFIXES = (".hdf5", ".h5", ".uvh5")


@dataclass
class FileResult:
    path: str
    status: str  # grouped | duplicate | stray | invalid | known
    group_id: str | None = None
    error: str | None = None


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    waiting_for_stability: int = 0


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class Ingestor:
    """Synchronous ingest logic; ``IngestService`` runs it off the event loop."""

    def __init__(self, settings: Any, db: Database, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self._seen: dict[str, tuple[int, float, float]] = {}  # path -> (size, mtime, unchanged since)

    # ---- polling ---------------------------------------------------------------
    def poll(self, now: datetime | None = None) -> IngestReport:
        """One pass over ``incoming/``: register stable files, then finalise groups."""
        now = now or datetime.now(UTC)
        report = IngestReport()
        stable: list[Path] = []
        clock = now.timestamp()
        present: set[str] = set()
        incoming = self.settings.incoming_dir
        try:
            entries = sorted(os.scandir(incoming), key=lambda e: e.name)
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.is_file() or entry.name.startswith("."):
                continue
            path = entry.path
            present.add(path)
            st = entry.stat()
            size, mtime = st.st_size, st.st_mtime
            prev = self._seen.get(path)
            if prev is None or prev[0] != size or prev[1] != mtime:
                self._seen[path] = (size, mtime, clock)
                if self.settings.ingest.stable_s > 0:
                    report.waiting_for_stability += 1
                    continue
            since = self._seen[path][2]
            if clock - since >= self.settings.ingest.stable_s and clock - mtime >= self.settings.ingest.stable_s:
                stable.append(Path(path))
            else:
                report.waiting_for_stability += 1
        for gone in set(self._seen) - present:
            del self._seen[gone]
        if stable:
            report.files = self.register(stable, now=now, known_ok=True)
        ready, incomplete = self.finalize(now)
        report.ready, report.incomplete = ready, incomplete
        return report

    # ---- registration --------------------------------------------------------------
    def register(self, paths: Iterable[Path], *, now: datetime | None = None, known_ok: bool = False) -> list[FileResult]:
        """Record files (idempotently) and attach them to groups; returns what happened to each."""
        now = now or datetime.now(UTC)
        results: list[FileResult] = []
        tol = timedelta(seconds=self.settings.ingest.group_tolerance_s)
        with self.db.session() as s:
            known = set(s.scalars(select(m.Hdf5File.path)))
            for raw in paths:
                path = Path(raw).absolute()
                key = str(path)
                if key in known:
                    if not known_ok:
                        results.append(FileResult(key, "known"))
                    continue
                known.add(key)
                results.append(self._register_one(s, path, now, tol))
        for r in results:
            if r.status in ("stray", "invalid", "duplicate"):
                log.warning("ingest: %s %s: %s", r.status, r.path, r.error)
        return results

    def _register_one(self, s: Any, path: Path, now: datetime, tol: timedelta) -> FileResult:
        try:
            st = path.stat()
        except OSError as exc:
            return FileResult(str(path), "invalid", error=f"cannot stat: {exc.strerror or exc}")
        row = m.Hdf5File(path=str(path), filename=path.name, size_bytes=st.st_size, mtime=st.st_mtime,
                         discovered_at=now)
        s.add(row)
        if path.suffix.lower() not in SUFFIXES:
            row.status, row.error = "stray", f"not a subband file (expected *_sbNN.hdf5): {path.name}"
            return FileResult(str(path), row.status, error=row.error)
        try:
            ts, sb = parse_subband_filename(path.name)
        except SubbandNameError as exc:
            row.status, row.error = "stray", str(exc)
            return FileResult(str(path), row.status, error=row.error)
        ts = _utc(ts)
        row.subband, row.timestamp = sb, ts
        group = s.scalar(select(m.ObservationGroup)
                         .where(m.ObservationGroup.group_time >= ts - tol, m.ObservationGroup.group_time <= ts + tol)
                         .order_by(m.ObservationGroup.group_time).limit(1))
        if group is None:
            gid = ts.strftime("%Y-%m-%dT%H:%M:%S")
            group = m.ObservationGroup(id=gid, group_time=ts, ingest_status="collecting", state=states.PENDING,
                                       created_at=now)
            s.add(group)
            s.flush()
        row.group_id = group.id
        dup = s.scalar(select(m.Hdf5File).where(m.Hdf5File.group_id == group.id, m.Hdf5File.subband == sb,
                                                 m.Hdf5File.status == "grouped"))
        if dup is not None:
            row.status = "duplicate"
            row.error = f"duplicate of sb{sb:02d} already in group {group.id} ({dup.filename})"
            return FileResult(str(path), row.status, group.id, row.error)
        if group.ingest_status != "collecting":
            row.status = "stray"
            row.error = f"arrived after group {group.id} was {group.ingest_status}; not added"
            return FileResult(str(path), row.status, group.id, row.error)
        try:
            header = _read_header(path)
        except PermanentStageError as exc:
            row.status, row.error = "invalid", str(exc)
            return FileResult(str(path), row.status, group.id, row.error)
        row.status = "grouped"
        group.n_subbands += 1
        if header.get("dec_deg") is not None and group.dec_deg is None:
            group.dec_deg = header["dec_deg"]
        return FileResult(str(path), row.status, group.id)

    # ---- readiness ---------------------------------------------------------------
    def finalize(self, now: datetime | None = None) -> tuple[list[str], list[str]]:
        """Mark complete groups ready; decide on groups that waited long enough."""
        now = now or datetime.now(UTC)
        cfg = self.settings.ingest
        ready: list[str] = []
        incomplete: list[str] = []
        pointing: list[dict[str, Any]] = []
        with self.db.session() as s:
            collecting = s.scalars(select(m.ObservationGroup).where(m.ObservationGroup.ingest_status == "collecting")
                                   .order_by(m.ObservationGroup.group_time))
            for group in collecting:
                present = sorted(f.subband for f in group.files if f.status == "grouped" and f.subband is not None)
                missing = [sb for sb in range(N_SUBBANDS) if sb not in present]
                waited = (now - group.created_at).total_seconds()
                if not missing:
                    self._ready(group, now, [])
                    ready.append(group.id)
                    change = self._check_pointing(s, group)
                    if change:
                        pointing.append(change)
                elif waited >= cfg.incomplete_wait_s:
                    names = ", ".join(f"sb{sb:02d}" for sb in missing)
                    if len(present) >= cfg.min_subbands:
                        self._ready(group, now, missing)
                        group.warnings = [*group.warnings, f"proceeding without {len(missing)} subbands: {names}"]
                        ready.append(group.id)
                        change = self._check_pointing(s, group)
                        if change:
                            pointing.append(change)
                    else:
                        group.ingest_status = "incomplete"
                        group.missing_subbands = missing
                        reason = (f"incomplete: {len(present)} of {N_SUBBANDS} subbands after {waited:.0f} s "
                                  f"(need {cfg.min_subbands}); missing {names}")
                        transition(s, group.id, states.PENDING, states.FAILED, reason=reason, worker="ingest")
                        incomplete.append(group.id)
        for change in pointing:
            if self.bus:
                self.bus.publish(events.POINTING_CHANGED, **change)
        for gid in ready:
            log.info("group %s ready", gid)
            if self.bus:
                self.bus.publish(events.GROUP_READY, group_id=gid)
        for gid in incomplete:
            log.warning("group %s incomplete", gid)
        return ready, incomplete

    def _ready(self, group: m.ObservationGroup, now: datetime, missing: list[int]) -> None:
        from engine.processing.stage_calibrate import classify_group

        group.ingest_status, group.ready_at, group.missing_subbands = "ready", now, missing
        classify_group(group, self.settings)  # calibrator transits get priority from the start

    def _check_pointing(self, s: Any, group: m.ObservationGroup) -> dict[str, Any] | None:
        """Report a pointing change (declination moved ≥ threshold) as an alert and an event."""
        if group.dec_deg is None:
            return None
        row = s.get(m.KeyValue, "pointing.last")
        previous = row.value.get("dec_deg") if row else None
        if row is None:
            s.add(m.KeyValue(key="pointing.last", value={"dec_deg": group.dec_deg, "group_id": group.id}))
        else:
            row.value = {"dec_deg": group.dec_deg, "group_id": group.id}
        if previous is None or abs(group.dec_deg - previous) < self.settings.calibration.pointing_change_deg:
            return None
        message = (f"pointing changed from dec {previous:.2f}° to {group.dec_deg:.2f}° at group {group.id}; "
                   f"calibration sets from the old declination will not be applied")
        s.add(m.Alert(alert_type="pointing_change", severity="warning", message=message, source="ingest",
                      details={"from_dec_deg": previous, "to_dec_deg": group.dec_deg, "group_id": group.id}))
        log.warning(message)
        return {"group_id": group.id, "from_dec_deg": previous, "to_dec_deg": group.dec_deg, "message": message}


def _read_header(path: Path) -> dict[str, Any]:
    """Validate the UVH5 header at registration: a corrupt file is named now, not at conversion."""
    import math

    from engine.uvh5 import read_header

    header = read_header(path)
    dec = header.pointing_dec if header.pointing_dec is not None else header.phase_center_dec
    return {"dec_deg": math.degrees(dec) if dec is not None else None}


class IngestService:
    """Runs ``Ingestor.poll`` on a timer in a worker thread, never overlapping itself."""

    def __init__(self, ingestor: Ingestor, interval_s: float) -> None:
        self.ingestor = ingestor
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.last_report: IngestReport | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ingest")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                self.last_report = await asyncio.to_thread(self.ingestor.poll)
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("ingest poll failed")
            await asyncio.sleep(self.interval_s)
