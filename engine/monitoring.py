"""What the health pages show: calibration validity, pointing and transits, alerts, storage, resources.

Everything is computed from the database, the data dir and /proc — no placeholder
values: where nothing has been measured yet the answer is empty, with a message.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m
from engine.settings import DATA_SUBDIRS, Settings
from engine.units import human_bytes

MJD_UNIX = 40587.0
CATEGORY = {"incoming": "hdf5", "ms": "ms", "images": "images", "caltables": "calibration", "logs": "logs"}


def mjd(t: datetime) -> float:
    return t.timestamp() / 86400.0 + MJD_UNIX


def from_mjd(x: float) -> datetime:
    return datetime.fromtimestamp((x - MJD_UNIX) * 86400.0, UTC)


# ---- calibration -------------------------------------------------------------------
def active_validity(db: Database, at_mjd: float) -> dict[str, Any]:
    with db.session() as s:
        sets = list(s.scalars(select(m.CalibrationSet).where(
            m.CalibrationSet.status == "active", m.CalibrationSet.valid_start_mjd <= at_mjd,
            m.CalibrationSet.valid_end_mjd >= at_mjd)))
        out = []
        for c in sets:
            tables = [{"set_name": c.name, "table_type": t.table_type, "path": t.path, "status": c.status,
                       "valid_start_mjd": c.valid_start_mjd, "valid_end_mjd": c.valid_end_mjd,
                       "cal_field": c.calibrator_name, "refant": c.refant, "created_at": c.created_at.timestamp()}
                      for t in c.tables]
            out.append({"set_name": c.name, "tables": tables, "earliest_start_mjd": c.valid_start_mjd,
                        "latest_end_mjd": c.valid_end_mjd, "table_count": len(tables)})
    overlapping = sum(1 for a in sets for b in sets if a.id < b.id and a.calibrator_name == b.calibrator_name)
    return {"query_mjd": at_mjd, "query_iso": from_mjd(at_mjd), "active_sets": out,
            "total_active_tables": sum(x["table_count"] for x in out), "overlapping_sets": overlapping}


def validity_timeline(db: Database, hours_back: float, hours_forward: float,
                      now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    start, end = now - timedelta(hours=hours_back), now + timedelta(hours=hours_forward)
    nm = mjd(now)
    with db.session() as s:
        sets = list(s.scalars(select(m.CalibrationSet).where(
            m.CalibrationSet.status == "active", m.CalibrationSet.valid_end_mjd >= mjd(start),
            m.CalibrationSet.valid_start_mjd <= mjd(end)).order_by(m.CalibrationSet.valid_start_mjd)))
        windows = [{"set_name": c.name, "table_type": t.table_type, "cal_field": c.calibrator_name,
                    "refant": c.refant, "start_mjd": c.valid_start_mjd, "end_mjd": c.valid_end_mjd,
                    "start_iso": from_mjd(c.valid_start_mjd), "end_iso": from_mjd(c.valid_end_mjd),
                    "duration_hours": (c.valid_end_mjd - c.valid_start_mjd) * 24,
                    "is_current": c.valid_start_mjd <= nm <= c.valid_end_mjd}
                   for c in sets for t in c.tables]
    out: dict[str, Any] = {"timeline_start": start, "timeline_end": end, "current_time": now, "current_mjd": nm,
                           "windows": windows, "total_windows": len(windows)}
    if not windows:
        out["message"] = "no active calibration set in this time range"
    return out


def last_valid_calibration(db: Database) -> datetime | None:
    with db.session() as s:
        t = s.scalar(select(func.max(m.CalibrationSet.created_at)).where(m.CalibrationSet.status == "active"))
        return t


# ---- pointing ------------------------------------------------------------------------------
def pointing_status(db: Database, settings: Settings, now: datetime | None = None, hours: float = 24) -> dict:
    from engine.calibration.catalogue import candidates_near_dec, merged_catalogue
    from engine.calibration.transit import OVRO_LAT_DEG, meridian_ra_deg

    import numpy as np

    now = now or datetime.now(UTC)
    nm = mjd(now)
    lst_deg = float(np.ravel(meridian_ra_deg(nm))[0])
    with db.session() as s:
        kv = s.get(m.KeyValue, "pointing.last")
        dec = kv.value.get("dec_deg") if kv else None
        current = s.scalar(select(m.ObservationGroup).order_by(m.ObservationGroup.group_time.desc()).limit(1))
    transits = []
    active = None
    if dec is not None:
        cat = merged_catalogue(settings.calibration.catalogue_files or None)
        for cal in candidates_near_dec(dec, settings.calibration.dec_window_deg, cat):
            dra = (cal.ra_deg - lst_deg) % 360.0
            t = nm + dra / 360.0 * 0.99726957
            if dra > 359.0 - 1.5:  # passed within the last ~6 min: still in the beam
                t -= 0.99726957
            for k in range(int(hours // 24) + 1):
                tk = t + k * 0.99726957
                dt_s = (tk - nm) * 86400
                if dt_s > hours * 3600:
                    break
                status = "in_progress" if abs(dt_s) < 600 else ("upcoming" if dt_s < 3 * 3600 else "scheduled")
                if status == "in_progress":
                    active = cal.name
                transits.append({"calibrator": cal.name, "ra_deg": cal.ra_deg, "dec_deg": cal.dec_deg,
                                 "transit_utc": from_mjd(tk), "time_to_transit_sec": dt_s, "lst_at_transit": cal.ra_deg / 15,
                                 "elevation_at_transit": 90.0 - abs(OVRO_LAT_DEG - cal.dec_deg), "status": status})
        transits.sort(key=lambda x: x["transit_utc"])
    return {"current_lst": lst_deg / 15.0, "current_lst_deg": lst_deg, "active_calibrator": active,
            "upcoming_transits": transits, "timestamp": now, "pointing_dec_deg": dec,
            "latest_group": current.id if current else None}


# ---- alerts --------------------------------------------------------------------------------
def list_alerts(db: Database, severity: str | None, acknowledged: bool | None, limit: int) -> dict[str, Any]:
    with db.session() as s:
        q = select(m.Alert).order_by(m.Alert.triggered_at.desc()).limit(limit)
        if severity:
            q = q.where(m.Alert.severity == severity)
        if acknowledged is not None:
            q = q.where(m.Alert.acknowledged.is_(acknowledged))
        alerts = [{"id": a.id, "alert_type": a.alert_type, "severity": a.severity,
                   "calibrator_name": a.calibrator_name, "message": a.message, "triggered_at": a.triggered_at,
                   "source": a.source, "created_at": a.triggered_at, "acknowledged": a.acknowledged,
                   "acknowledged_at": a.acknowledged_at, "acknowledged_by": a.acknowledged_by}
                  for a in s.scalars(q)]
        total = s.scalar(select(func.count()).select_from(m.Alert)) or 0
        unack = s.scalar(select(func.count()).select_from(m.Alert).where(m.Alert.acknowledged.is_(False))) or 0
    return {"alerts": alerts, "total_count": total, "unacknowledged_count": unack}


def acknowledge_alert(db: Database, alert_id: int, by: str, at: datetime | None = None) -> bool:
    """Record who acknowledged the alert and when (the first acknowledgement stands)."""
    with db.session() as s:
        a = s.get(m.Alert, alert_id)
        if a is None:
            return False
        if not a.acknowledged:
            a.acknowledged, a.acknowledged_at, a.acknowledged_by = True, at or datetime.now(UTC), by
        return True


def raise_alert(db: Database, alert_type: str, severity: str, message: str, source: str,
                **details: Any) -> None:
    with db.session() as s:
        s.add(m.Alert(alert_type=alert_type, severity=severity, message=message, source=source, details=details))


# ---- storage -------------------------------------------------------------------------------------
def _dir_usage(path: Path) -> tuple[int, int, float | None]:
    size = count = 0
    newest: float | None = None
    stack = [path]
    while stack:
        p = stack.pop()
        try:
            with os.scandir(p) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    elif e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        size += st.st_size
                        count += 1
                        newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
        except OSError:
            continue
    return size, count, newest




def storage_summary(settings: Settings, warn_percent: float = 85.0) -> dict[str, Any]:
    t0 = time.perf_counter()
    du = shutil.disk_usage(settings.data_dir)
    pct = 100.0 * du.used / du.total
    partitions = [{"mount_point": str(settings.data_dir), "device": _device(settings.data_dir),
                   "filesystem": _fstype(settings.data_dir), "total_bytes": du.total, "used_bytes": du.used,
                   "free_bytes": du.free, "usage_percent": round(pct, 2), "total_formatted": human_bytes(du.total),
                   "used_formatted": human_bytes(du.used), "free_formatted": human_bytes(du.free)}]
    dirs = []
    total = 0
    for name in DATA_SUBDIRS:
        path = settings.subdir(name)
        size, count, newest = _dir_usage(path)
        total += size
        dirs.append({"path": str(path), "name": name, "size_bytes": size, "size_formatted": human_bytes(size),
                     "file_count": count,
                     "last_modified": datetime.fromtimestamp(newest, UTC) if newest else None,
                     "category": CATEGORY.get(name, "other")})
    db_size = sum(p.stat().st_size for p in settings.data_dir.glob("pipeline.sqlite3*") if p.is_file())
    total += db_size
    alerts = []
    if pct >= warn_percent:
        alerts.append({"severity": "critical" if pct >= 95 else "warning",
                       "message": f"disk {pct:.1f}% full at {settings.data_dir}", "path": str(settings.data_dir),
                       "threshold_percent": warn_percent, "current_percent": round(pct, 2)})
    return {"partitions": partitions, "directories": dirs, "alerts": alerts, "total_pipeline_data_bytes": total,
            "total_pipeline_data_formatted": human_bytes(total), "checked_at": datetime.now(UTC),
            "check_duration_ms": (time.perf_counter() - t0) * 1000}


def cleanup_candidates(settings: Settings, db: Database, min_age_days: float = 30.0) -> dict[str, Any]:
    """Stale temporaries (always safe) and old logs; products are never proposed while in use."""
    now = time.time()
    cands = []
    for name in ("ms", "images", "caltables", "backups", "exports"):
        root = settings.subdir(name)
        if not root.exists():
            continue
        for e in root.iterdir():
            if ".tmp" in e.name or e.name.startswith(".imaging-"):
                size, _, newest = _dir_usage(e) if e.is_dir() else (e.stat().st_size, 1, e.stat().st_mtime)
                age = (now - (newest or now)) / 86400
                if age >= 1 / 24:  # an hour old: no stage is still writing it
                    cands.append({"path": str(e), "size_bytes": size, "size_formatted": human_bytes(size),
                                  "age_days": round(age, 2), "reason": "temporary output of an interrupted stage",
                                  "category": "temp", "safe_to_delete": True})
    logs = settings.logs_dir
    for f in logs.glob("contimg.log.*") if logs.exists() else []:
        age = (now - f.stat().st_mtime) / 86400
        if age >= min_age_days:
            cands.append({"path": str(f), "size_bytes": f.stat().st_size, "size_formatted": human_bytes(f.stat().st_size),
                          "age_days": round(age, 1), "reason": f"rotated log older than {min_age_days:g} days",
                          "category": "old_logs", "safe_to_delete": True})
    total = sum(c["size_bytes"] for c in cands)
    return {"candidates": cands, "total_reclaimable_bytes": total, "total_reclaimable_formatted": human_bytes(total),
            "generated_at": datetime.now(UTC)}


def _device(path: Path) -> str:
    try:
        st = os.stat(path)
        return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    except OSError:
        return ""


def _fstype(path: Path) -> str:
    best, fs = "", ""
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, fs = parts[1], parts[2]
    except OSError:
        pass
    return fs


# ---- host resources ---------------------------------------------------------------------------------
_last_cpu: tuple[float, float] | None = None


def resources() -> dict[str, float]:
    """CPU (since the previous call), memory and load from /proc."""
    global _last_cpu
    cpu = 0.0
    try:
        with open("/proc/stat") as fh:
            vals = [float(x) for x in fh.readline().split()[1:]]
        idle, total = vals[3] + vals[4], sum(vals)
        if _last_cpu is not None and total > _last_cpu[1]:
            cpu = 100.0 * (1 - (idle - _last_cpu[0]) / (total - _last_cpu[1]))
        _last_cpu = (idle, total)
        mem = {}
        with open("/proc/meminfo") as fh:
            for line in fh:
                k, v = line.split(":", 1)
                mem[k] = float(v.split()[0])
        mem_pct = 100.0 * (1 - mem.get("MemAvailable", 0) / mem["MemTotal"])
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        mem_pct = 0.0
    return {"cpu_percent": round(cpu, 1), "memory_percent": round(mem_pct, 1)}


# ---- storage history -------------------------------------------------------------------------------
SAMPLES_KEY = "storage.samples"
MAX_SAMPLES = 24 * 90  # hourly for 90 days


def record_storage_sample(db: Database, settings: Settings, now: datetime | None = None) -> None:
    """Append one disk-usage sample (the scheduler calls this hourly) for the trend view."""
    now = now or datetime.now(UTC)
    du = shutil.disk_usage(settings.data_dir)
    with db.session() as s:
        row = s.get(m.KeyValue, SAMPLES_KEY)
        samples = list((row.value if row else {}).get("samples", []))
        samples.append([now.timestamp(), du.used, du.total])
        value = {"mount_point": str(settings.data_dir), "samples": samples[-MAX_SAMPLES:]}
        if row is None:
            s.add(m.KeyValue(key=SAMPLES_KEY, value=value))
        else:
            row.value = value


def storage_trend(db: Database, settings: Settings, days: float, now: datetime | None = None) -> dict[str, Any]:
    """Usage over the last ``days`` and a least-squares growth rate; days until full when growing."""
    now = now or datetime.now(UTC)
    since = now.timestamp() - days * 86400
    with db.session() as s:
        row = s.get(m.KeyValue, SAMPLES_KEY)
        samples = [x for x in (row.value if row else {}).get("samples", []) if x[0] >= since]
    du = shutil.disk_usage(settings.data_dir)
    samples.append([now.timestamp(), du.used, du.total])
    points = [{"timestamp": datetime.fromtimestamp(t, UTC), "used_bytes": int(u),
               "usage_percent": round(100 * u / tot, 2)} for t, u, tot in samples]
    rate = 0.0
    if len(samples) >= 2 and samples[-1][0] - samples[0][0] > 3600:
        ts = [x[0] / 86400 for x in samples]
        us = [x[1] for x in samples]
        tm, um = sum(ts) / len(ts), sum(us) / len(us)
        var = sum((t - tm) ** 2 for t in ts)
        rate = sum((t - tm) * (u - um) for t, u in zip(ts, us, strict=True)) / var if var else 0.0
    return {"mount_point": str(settings.data_dir), "data_points": points, "growth_rate_bytes_per_day": rate,
            "days_until_full": (du.free / rate) if rate > 0 else None,
            "period_start": points[0]["timestamp"], "period_end": points[-1]["timestamp"]}


# ---- calibrator flux monitoring --------------------------------------------------------------------------
STABLE_STD = 0.05  # a calibrator is stable when its ratio scatters less than this and stays within the alert band


def _ratio_stats(ratios: list[float]) -> dict[str, float]:
    import numpy as np

    r = np.asarray(ratios, dtype=float)
    return {"mean_flux_ratio": float(r.mean()), "std_flux_ratio": float(r.std()),
            "min_flux_ratio": float(r.min()), "max_flux_ratio": float(r.max())}


def flux_monitoring_summary(db: Database, alert_fraction: float) -> dict[str, Any]:
    """Per calibrator: how many times it was measured in calibrated images and how its observed/catalogue
    flux ratio behaves (engine/processing/stage_image.py measures it)."""
    with db.session() as s:
        rows = s.execute(select(m.CalibratorFlux.calibrator_name, m.CalibratorFlux.mjd, m.CalibratorFlux.flux_ratio,
                                m.CalibratorFlux.created_at).order_by(m.CalibratorFlux.mjd)).all()
        alerts = dict(s.execute(select(m.Alert.calibrator_name, func.count()).where(
            m.Alert.alert_type == "calibrator_flux").group_by(m.Alert.calibrator_name)).all())
    by_name: dict[str, list[Any]] = {}
    for r in rows:
        by_name.setdefault(r[0], []).append(r)
    cals = []
    for name, rs in sorted(by_name.items()):
        st = _ratio_stats([r[2] for r in rs])
        cals.append({"calibrator_name": name, "n_measurements": len(rs), "latest_mjd": rs[-1][1],
                     "latest_flux_ratio": rs[-1][2], "mean_flux_ratio": st["mean_flux_ratio"],
                     "flux_ratio_std": st["std_flux_ratio"],
                     "is_stable": st["std_flux_ratio"] <= STABLE_STD
                     and all(abs(r[2] - 1) <= alert_fraction for r in rs[-5:]),
                     "alerts_count": int(alerts.get(name, 0))})
    out: dict[str, Any] = {"calibrators": cals, "total_measurements": len(rows),
                           "total_alerts": int(sum(alerts.values())),
                           "last_check_time": max((r[3] for r in rows), default=None)}
    if not rows:
        out["message"] = ("no calibrator has been measured in a calibrated image yet: measurements come from "
                          "images whose field holds a catalogue calibrator")
    return out


def flux_history(db: Database, name: str, days: float) -> dict[str, Any] | None:
    from astropy.time import Time

    since = Time(datetime.now(UTC)).mjd - days
    with db.session() as s:
        known = s.scalar(select(m.CalibratorFlux.calibrator_name).where(
            m.CalibratorFlux.calibrator_name == name).limit(1))
        if known is None:
            return None
        rows = s.scalars(select(m.CalibratorFlux).where(m.CalibratorFlux.calibrator_name == name,
                                                        m.CalibratorFlux.mjd >= since)
                         .order_by(m.CalibratorFlux.mjd)).all()
        meas = [{"mjd": r.mjd, "timestamp_iso": Time(r.mjd, format="mjd").to_datetime(timezone=UTC),
                 "flux_ratio": r.flux_ratio, "observed_flux_jy": r.observed_flux_jy,
                 "catalog_flux_jy": r.catalog_flux_jy, "phase_rms_deg": r.phase_rms_deg, "amp_rms": r.amp_rms,
                 "image_id": r.image_id, "beam_gain": r.beam_gain, "snr": r.snr} for r in rows]
    stats = _ratio_stats([x["flux_ratio"] for x in meas]) if meas else {
        "mean_flux_ratio": None, "std_flux_ratio": None, "min_flux_ratio": None, "max_flux_ratio": None}
    return {"calibrator_name": name, "measurements": meas, "stats": stats}
