"""Read access to data products — images, sources, light curves, Measurement Sets — as plain data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m


def _image_summary(i: m.Image) -> dict[str, Any]:
    return {"id": i.id, "path": i.path, "qa_grade": i.qa_grade, "created_at": i.created_at, "run_id": i.job_id,
            "pointing_ra_deg": i.pointing_ra_deg, "pointing_dec_deg": i.pointing_dec_deg}


class Products:
    def __init__(self, db: Database) -> None:
        self.db = db

    def listing_versions(self) -> dict[str, int]:
        """Change counters of the whole-table listings, kept exact by triggers (migration 0006)."""
        with self.db.session() as s:
            return {k: v for k, v in s.execute(select(m.ListingVersion.kind, m.ListingVersion.version))}

    # ---- images ------------------------------------------------------------------
    def list_images(self, limit: int = 20000) -> list[dict[str, Any]]:
        cols = (m.Image.id, m.Image.path, m.Image.qa_grade, m.Image.created_at, m.Image.job_id,
                m.Image.pointing_ra_deg, m.Image.pointing_dec_deg)
        with self.db.session() as s:
            rows = s.execute(select(*cols).order_by(m.Image.created_at.desc()).limit(limit))
            return [{"id": r[0], "path": r[1], "qa_grade": r[2], "created_at": r[3], "run_id": r[4],
                     "pointing_ra_deg": r[5], "pointing_dec_deg": r[6]} for r in rows]

    def get_image(self, image_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            i = s.get(m.Image, image_id)
            if i is None:
                return None
            out = _image_summary(i)
            out.update(ms_path=i.ms_path, cal_table=i.cal_table, qa_summary=i.qa_summary, noise_jy=i.noise_jy,
                       dynamic_range=i.dynamic_range, beam_major_arcsec=i.beam_major_arcsec,
                       beam_minor_arcsec=i.beam_minor_arcsec, beam_pa_deg=i.beam_pa_deg,
                       peak_flux_jy=i.peak_flux_jy, png_path=i.png_path, backend=i.backend,
                       data_column=i.data_column, params=i.params, group_id=i.group_id, mid_mjd=i.mid_mjd)
            return out

    def image_by_path(self, path: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            i = s.scalar(select(m.Image).where(m.Image.path == path))
            return self.get_image(i.id) if i else None

    def delete_image(self, image_id: str) -> dict[str, Any] | None:
        """Remove the image row (and its photometry); returns the files the caller may delete."""
        with self.db.session() as s:
            i = s.get(m.Image, image_id)
            if i is None:
                return None
            files = [p for p in (i.path, i.png_path) if p]
            stem = i.path.removesuffix("-image.fits")
            files += [f"{stem}-{kind}.fits" for kind in ("model", "residual", "psf")]
            affected = list(s.scalars(select(m.Photometry.source_id).where(m.Photometry.image_id == image_id)))
            s.delete(i)
            s.flush()
            from engine.processing.stage_image import update_source_stats

            for sid in set(affected):
                update_source_stats(s, sid)
            return {"files": files}

    def set_image_rating(self, image_id: str, grade: str | None, note: str) -> bool:
        with self.db.session() as s:
            i = s.get(m.Image, image_id)
            if i is None:
                return False
            if grade is not None:
                i.qa_grade = grade
            i.qa_summary = ((i.qa_summary or "") + f"; rated: {note}").strip("; ")
            return True

    # ---- sources -------------------------------------------------------------------
    def list_sources(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.execute(select(m.Source.id, m.Source.name, m.Source.ra_deg, m.Source.dec_deg,
                                    m.Source.latest_image_id, m.Source.n_images, m.Source.eta, m.Source.v,
                                    m.Source.peak_flux_jy).order_by(m.Source.id))
            return [{"id": r[0], "name": r[1], "ra_deg": r[2], "dec_deg": r[3], "image_id": r[4],
                     "num_images": r[5], "eta": _finite(r[6]), "v": _finite(r[7]), "peak_flux_jy": _finite(r[8])}
                    for r in rows]

    def get_source(self, source_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            src = s.get(m.Source, source_id)
            if src is None:
                return None
            rows = s.execute(select(m.Photometry, m.Image).join(m.Image, m.Image.id == m.Photometry.image_id)
                             .where(m.Photometry.source_id == source_id).order_by(m.Photometry.mjd))
            contributing = [{"image_id": img.id, "path": img.path, "ms_path": img.ms_path, "qa_grade": img.qa_grade,
                             "created_at": img.created_at, "flux_jy": _finite(p.flux_jy),
                             "flux_error_jy": _finite(p.flux_err_jy), "mjd": p.mjd, "forced": p.forced,
                             "snr": _finite(p.snr)} for p, img in rows]
            return {"id": src.id, "name": src.name, "ra_deg": src.ra_deg, "dec_deg": src.dec_deg,
                    "image_id": src.latest_image_id, "num_images": src.n_images, "eta": _finite(src.eta),
                    "v": _finite(src.v), "peak_flux_jy": _finite(src.peak_flux_jy),
                    "flux_jy": _finite(src.mean_flux_jy), "peak_flux": _finite(src.peak_flux_jy),
                    "integrated_flux": _finite(src.mean_flux_jy), "contributing_images": contributing,
                    "latest_image_id": src.latest_image_id, "n_detections": src.n_detections,
                    "first_detected_at": src.first_detected_at, "last_detected_at": src.last_detected_at,
                    "chi2_nu": _finite(src.chi2_nu), "modulation_index": _finite(src.modulation_index)}

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            return {"images": s.scalar(select(func.count()).select_from(m.Image)) or 0,
                    "sources": s.scalar(select(func.count()).select_from(m.Source)) or 0,
                    "measurement_sets": s.scalar(select(func.count()).select_from(m.MeasurementSet)) or 0}

    # ---- measurement sets ---------------------------------------------------------------
    def ms_record(self, path: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.path == path))
            if ms is None:
                return None
            group = s.get(m.ObservationGroup, ms.group_id)
            job = s.scalar(select(m.Job).where(m.Job.group_id == ms.group_id, m.Job.type == "convert")
                           .order_by(m.Job.created_at.desc()))
            matches = []
            for name in ms.cal_sets_applied or []:
                for t in s.scalars(select(m.CalibrationTable).join(m.CalibrationSet)
                                   .where(m.CalibrationSet.name == str(name))):
                    matches.append({"cal_table": t.path, "type": t.table_type})
            return {"path": ms.path, "pointing_ra_deg": ms.phase_ra_deg, "pointing_dec_deg": ms.phase_dec_deg,
                    "created_at": ms.created_at, "run_id": job.id if job else None, "qa_grade": ms.qa_grade,
                    "qa_summary": ms.qa_summary, "cal_table": matches[0]["cal_table"] if matches else None,
                    "scan_id": ms.group_id, "num_channels": ms.n_channels, "integration_time_s": ms.integration_time_s,
                    "calibrator_matches": matches, "group_state": group.state if group else None,
                    "flagged_fraction": ms.flagged_fraction}

    def known_ms_paths(self) -> set[str]:
        with self.db.session() as s:
            return set(s.scalars(select(m.MeasurementSet.path)))


def ms_antenna_layout(ms_path: str) -> dict[str, Any]:
    """Station positions (local E/N offsets) and per-antenna flagged percentage, read from the MS."""
    import numpy as np
    from casacore.tables import table

    with table(str(Path(ms_path) / "ANTENNA"), ack=False) as t:
        names = list(t.getcol("NAME"))
        pos = np.asarray(t.getcol("POSITION"))
    with table(ms_path, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        flags = t.getcol("FLAG")
    n = len(names)
    row_flag = flags.reshape(flags.shape[0], -1).mean(axis=1)
    cross = a1 != a2
    counts = np.bincount(a1[cross], minlength=n) + np.bincount(a2[cross], minlength=n)
    sums = np.bincount(a1[cross], weights=row_flag[cross], minlength=n) + \
        np.bincount(a2[cross], weights=row_flag[cross], minlength=n)
    from astropy.coordinates import EarthLocation
    import astropy.units as u

    centre = pos.mean(axis=0)
    loc = EarthLocation.from_geocentric(*centre, unit=u.m)
    lon, lat = loc.lon.rad, loc.lat.rad
    d = pos - centre
    east = -np.sin(lon) * d[:, 0] + np.cos(lon) * d[:, 1]
    north = -np.sin(lat) * np.cos(lon) * d[:, 0] - np.sin(lat) * np.sin(lon) * d[:, 1] + np.cos(lat) * d[:, 2]
    pairs = np.unique(np.stack([a1[cross], a2[cross]], axis=1), axis=0) if cross.any() else np.zeros((0, 2), int)
    per_ant = np.bincount(pairs[:, 0], minlength=n) + np.bincount(pairs[:, 1], minlength=n)
    antennas = [{"id": i, "name": names[i], "x_m": float(east[i]), "y_m": float(north[i]),
                 "flagged_pct": float(100 * sums[i] / counts[i]) if counts[i] else 100.0,
                 "baseline_count": int(per_ant[i])} for i in range(n)]
    nrow_t = len(pairs)
    return {"antennas": antennas, "array_center_lon": math.degrees(lon), "array_center_lat": math.degrees(lat),
            "total_baselines": int(nrow_t)}


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None

