"""VO export: sources and images as VOTable, FITS, CSV or JSON (astropy), and cone search.

An export is a row in ``export_jobs`` plus a file in ``exports/``, written to a
temporary name and renamed when complete; ``run_export`` is called in a worker
thread. Columns carry UCDs and units so VO tools understand them.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError
from engine.units import human_bytes

FORMATS = {"votable": ".vot", "fits": ".fits", "csv": ".csv", "json": ".json"}
EXPIRY = timedelta(days=7)

COLUMNS: dict[str, list[tuple[str, str, str, str, str | None, bool]]] = {
    # name, ucd, description, type, unit, required
    "sources": [
        ("id", "meta.id;meta.main", "source identifier", "char", None, True),
        ("name", "meta.id", "source name", "char", None, False),
        ("ra_deg", "pos.eq.ra;meta.main", "right ascension (J2000)", "double", "deg", True),
        ("dec_deg", "pos.eq.dec;meta.main", "declination (J2000)", "double", "deg", True),
        ("peak_flux_jy", "phot.flux.density;stat.max", "brightest measured flux density", "double", "Jy", False),
        ("mean_flux_jy", "phot.flux.density;stat.mean", "mean flux density", "double", "Jy", False),
        ("n_detections", "meta.number", "number of detections", "int", None, False),
        ("eta", "stat.fit.chi2", "variability eta", "double", None, False),
        ("v", "stat.stdev", "variability V", "double", None, False),
    ],
    "images": [
        ("id", "meta.id;meta.main", "image identifier", "char", None, True),
        ("path", "meta.ref.url", "FITS file", "char", None, True),
        ("pointing_ra_deg", "pos.eq.ra;meta.main", "phase centre RA", "double", "deg", False),
        ("pointing_dec_deg", "pos.eq.dec;meta.main", "phase centre Dec", "double", "deg", False),
        ("mid_mjd", "time.epoch", "mid time", "double", "d", False),
        ("noise_jy", "stat.stdev;phot.flux.density", "image noise", "double", "Jy/beam", False),
        ("peak_flux_jy", "phot.flux.density;stat.max", "image peak", "double", "Jy/beam", False),
        ("beam_major_arcsec", "instr.beam;phys.angSize", "restoring beam major axis", "double", "arcsec", False),
        ("qa_grade", "meta.code.qual", "QA grade", "char", None, False),
    ],
}
COLUMNS["catalogs"] = COLUMNS["sources"]
MODELS = {"sources": m.Source, "catalogs": m.Source, "images": m.Image}
RA_COL = {"sources": "ra_deg", "catalogs": "ra_deg", "images": "pointing_ra_deg"}


class ExportError(ContimgError):
    pass


def columns(data_type: str) -> list[dict[str, Any]]:
    if data_type not in COLUMNS:
        raise ExportError(f"data type {data_type!r} cannot be exported (available: sources, images, catalogs)")
    return [{"name": n, "ucd": u, "description": d, "data_type": t, "unit": unit, "required": r}
            for n, u, d, t, unit, r in COLUMNS[data_type]]


def _query(s: Any, data_type: str, flt: dict[str, Any]) -> Any:
    model = MODELS[data_type]
    q = select(model)
    cone = flt.get("cone_search")
    if cone:
        ra_col, dec_col = getattr(model, RA_COL[data_type]), getattr(model, RA_COL[data_type].replace("ra", "dec"))
        r = float(cone["radius_arcmin"]) / 60.0
        q = q.where(dec_col >= float(cone["dec"]) - r, dec_col <= float(cone["dec"]) + r)
        del ra_col  # exact separation is applied after the box cut
    if data_type == "images":
        tr = flt.get("time_range")
        if tr:
            q = q.where(model.created_at >= _t(tr["start"]), model.created_at <= _t(tr["end"]))
    return q


def _t(value: Any) -> datetime:
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sep_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def select_rows(db: Database, data_type: str, flt: dict[str, Any]) -> list[dict[str, Any]]:
    names = [c[0] for c in COLUMNS[data_type]]
    limit = int(flt.get("limit") or 100_000)
    cone = flt.get("cone_search")
    with db.session() as s:
        rows = []
        for obj in s.scalars(_query(s, data_type, flt)):
            row = {n: getattr(obj, n) for n in names}
            if cone:
                ra, dec = row.get(RA_COL[data_type]), row.get(RA_COL[data_type].replace("ra", "dec"))
                if ra is None or dec is None or _sep_deg(ra, dec, float(cone["ra"]), float(cone["dec"])) > \
                        float(cone["radius_arcmin"]) / 60.0:
                    continue
            rows.append(row)
            if len(rows) >= limit:
                break
    return rows


def preview(db: Database, flt: dict[str, Any]) -> dict[str, Any]:
    data_type = flt["data_type"]
    cols = columns(data_type)
    rows = select_rows(db, data_type, flt)
    warnings = [] if rows else ["no records match this filter"]
    return {"estimated_records": len(rows), "estimated_size_bytes": 64 + 120 * len(rows) * len(cols) // 4,
            "estimated_time_seconds": max(1.0, len(rows) / 50_000), "available_columns": cols, "warnings": warnings}


def _out(j: m.ExportJob) -> dict[str, Any]:
    done = j.status == "completed"
    return {"id": j.id, "name": j.name, "format": j.format, "data_type": j.data_type, "filter": j.filters,
            "status": "expired" if done and j.completed_at and j.completed_at + EXPIRY < datetime.now(UTC)
            else j.status, "record_count": j.row_count or 0, "file_size_bytes": j.size_bytes or 0,
            "file_size_formatted": human_bytes(j.size_bytes), "created_at": j.created_at,
            "completed_at": j.completed_at, "expires_at": j.completed_at + EXPIRY if j.completed_at else None,
            "download_url": f"/api/v1/vo/exports/{j.id}/download" if done else None,
            "error_message": j.error_message, "created_by": j.created_by}


def create(db: Database, *, name: str, fmt: str, flt: dict[str, Any], created_by: str) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    columns(flt.get("data_type", ""))
    with db.session() as s:
        recent = s.scalar(select(m.ExportJob).where(
            m.ExportJob.created_by == created_by, m.ExportJob.name == name, m.ExportJob.format == fmt,
            m.ExportJob.created_at >= datetime.now(UTC) - timedelta(seconds=60)))
        if recent is not None and recent.filters == flt:  # the dashboard retries POSTs
            return _out(recent)
        j = m.ExportJob(name=name, data_type=flt["data_type"], format=fmt, filters=flt, created_by=created_by,
                        columns=[c[0] for c in COLUMNS[flt["data_type"]]])
        s.add(j)
        s.flush()
        return _out(j)


def run_export(db: Database, exports_dir: Path, job_id: str) -> None:
    from astropy.table import Table

    with db.session() as s:
        j = s.get_one(m.ExportJob, job_id)
        if j.status != "pending":
            return
        j.status = "processing"
        data_type, fmt, flt = j.data_type, j.format, dict(j.filters)
    try:
        rows = select_rows(db, data_type, flt)
        spec = COLUMNS[data_type]
        table = Table()
        for name, ucd, desc, typ, unit, _ in spec:
            values = [r[name] for r in rows]
            if typ == "double":
                col = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
            elif typ == "int":
                col = np.array([0 if v is None else int(v) for v in values], dtype=np.int64)
            else:
                col = np.array(["" if v is None else str(v) for v in values], dtype=str)
            table[name] = col
            table[name].description = desc
            if unit:
                table[name].unit = unit
            table[name].meta["ucd"] = ucd
        exports_dir.mkdir(parents=True, exist_ok=True)
        final = exports_dir / f"{job_id}{FORMATS[fmt]}"
        tmp = final.with_name(final.name + ".tmp")
        if fmt == "votable":
            from astropy.io.votable import from_table

            vot = from_table(table)
            for field in vot.get_first_table().fields:
                field.ucd = table[field.name].meta["ucd"]
            vot.to_xml(str(tmp))
        elif fmt == "fits":
            table.write(tmp, format="fits", overwrite=True)
        elif fmt == "csv":
            table.write(tmp, format="ascii.csv", overwrite=True)
        else:
            tmp.write_text(json.dumps([{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                        for k, v in r.items()} for r in _plain_rows(rows)], indent=1))
        os.replace(tmp, final)
        with db.session() as s:
            j = s.get_one(m.ExportJob, job_id)
            j.status, j.file_path, j.row_count = "completed", str(final), len(rows)
            j.size_bytes, j.completed_at, j.progress = final.stat().st_size, datetime.now(UTC), 1.0
    except Exception as exc:  # noqa: BLE001 - recorded on the job
        with db.session() as s:
            j = s.get_one(m.ExportJob, job_id)
            j.status, j.error_message = "failed", f"{type(exc).__name__}: {exc}"


def _plain_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]


def list_exports(db: Database, status: str | None, fmt: str | None, limit: int) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(m.ExportJob).order_by(m.ExportJob.created_at.desc()).limit(limit)
        if fmt:
            q = q.where(m.ExportJob.format == fmt)
        rows = [_out(j) for j in s.scalars(q)]
    return [r for r in rows if not status or r["status"] == status]


def get_export(db: Database, job_id: str) -> dict[str, Any] | None:
    with db.session() as s:
        j = s.get(m.ExportJob, job_id)
        if j is None:
            return None
        out = _out(j)
        out["file_path"] = j.file_path
        return out


def delete_export(db: Database, job_id: str) -> bool:
    with db.session() as s:
        j = s.get(m.ExportJob, job_id)
        if j is None:
            return False
        if j.file_path:
            Path(j.file_path).unlink(missing_ok=True)
        s.delete(j)
        return True


def cone_search(db: Database, ra: float, dec: float, radius_arcmin: float, limit: int) -> dict[str, Any]:
    rows = select_rows(db, "sources", {"cone_search": {"ra": ra, "dec": dec, "radius_arcmin": radius_arcmin},
                                       "limit": 1_000_000})
    hits = sorted(({"id": r["id"], "name": r["name"] or r["id"], "ra": r["ra_deg"], "dec": r["dec_deg"],
                    "separation_arcsec": _sep_deg(r["ra_deg"], r["dec_deg"], ra, dec) * 3600} for r in rows),
                  key=lambda h: h["separation_arcsec"])
    return {"total_matches": len(hits), "search_ra": ra, "search_dec": dec, "search_radius": radius_arcmin,
            "sources": hits[:limit]}


