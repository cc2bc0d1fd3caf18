"""Imaging and measuring stages.

``image`` (calibrated → imaging → imaged): the built-in imager (or WSClean when
configured) writes FITS products and a PNG; image QA is stored with the image and
a failing image is graded ``fail`` with its reasons — flagged, not silently used.

``measure`` (imaged → measuring → complete): source finding on the restored image,
forced photometry at the positions of already-known sources in the field,
crossmatch against the source table (``sources.match_radius_arcsec``), photometry
rows per image and per-source statistics with variability metrics (η, V, χ²/ν,
modulation index) once three epochs exist. A QA-failed image contributes no
photometry (its light-curve points would be wrong); the group still completes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from engine.db import models as m
from engine.processing import states
from engine.processing.stage_calibrate import _clean, _ms, mid_mjd
from engine.processing.stages import Stage


# ---- image ----------------------------------------------------------------------------
def prepare_image(s: Any, group: m.ObservationGroup, settings: Any) -> dict[str, Any]:
    cfg = settings.imaging
    return {"ms": _ms(s, group).path, "out_dir": str(settings.images_dir / group.id), "backend": cfg.backend,
            "params": dict(cfg.params), "qa": dict(cfg.qa) or None,
            "wsclean": str(cfg.wsclean_path) if cfg.wsclean_path else None, "prefix": group.id}


def run_image(params: dict[str, Any]) -> dict[str, Any]:
    import logging

    from engine.imaging.pipeline import image_ms

    log = logging.getLogger("contimg.stage.image")
    log.info("imaging %s with the %s backend", params["ms"], params["backend"])
    out = image_ms(params["ms"], params["out_dir"], params["params"], params["backend"], prefix=params["prefix"],
                   qa_thresholds=params["qa"], wsclean_path=params["wsclean"])
    log.info("image %s: %d px of %.2f\", beam %.1f\" x %.1f\", noise %.3g Jy/beam, peak %.3g Jy/beam, QA %s",
             out["products"].get("image"), out["npix"], out["cell_arcsec"], out["beam"].get("bmaj_arcsec", 0),
             out["beam"].get("bmin_arcsec", 0), out["noise_jy"], out["peak_jy"],
             "passed" if out["qa"]["passed"] else "FAILED: " + "; ".join(out["qa"]["reasons"]))
    return _clean(out)


def record_image(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any) -> None:
    ms = _ms(s, group)
    path = outcome["products"]["image"]
    img = s.scalar(select(m.Image).where(m.Image.path == path))
    if img is None:
        img = m.Image(path=path)
        s.add(img)
    qa = outcome["qa"]
    beam = outcome["beam"]
    img.group_id, img.ms_path, img.png_path = group.id, ms.path, outcome["products"].get("png")
    img.backend, img.data_column, img.params = outcome["backend"], outcome["data_column"], outcome["params"]
    img.mid_mjd = mid_mjd(group)
    ra, dec = (outcome.get("phase_dir_deg") or [None, None])[:2]
    img.pointing_ra_deg = (ra % 360.0) if ra is not None else None
    img.pointing_dec_deg = dec
    img.noise_jy, img.peak_flux_jy, img.dynamic_range = outcome["noise_jy"], outcome["peak_jy"], \
        outcome["dynamic_range"]
    img.beam_major_arcsec, img.beam_minor_arcsec = beam.get("bmaj_arcsec"), beam.get("bmin_arcsec")
    img.beam_pa_deg = beam.get("bpa_deg")
    uncalibrated = outcome["data_column"] != "CORRECTED_DATA"
    img.qa_grade = "fail" if not qa["passed"] else ("warn" if uncalibrated else "good")
    summary = f"RMS {1e3 * (outcome['noise_jy'] or 0):.2f} mJy, DR {outcome['dynamic_range'] or 0:.0f}"
    if not qa["passed"]:
        summary += "; QA failed: " + "; ".join(qa["reasons"])
    if uncalibrated:
        summary += f"; imaged {outcome['data_column']} (uncalibrated)"
    img.qa_summary = summary
    names = list(ms.cal_sets_applied or [])
    if names:
        t = s.scalar(select(m.CalibrationTable).join(m.CalibrationSet).where(m.CalibrationSet.name == names[0])
                     .where(m.CalibrationTable.table_type == "gain"))
        img.cal_table = t.path if t else None
    img.created_at = datetime.now(UTC)


# ---- measure ------------------------------------------------------------------------------
def _latest_image(s: Any, group: m.ObservationGroup) -> m.Image:
    img = s.scalar(select(m.Image).where(m.Image.group_id == group.id).order_by(m.Image.created_at.desc()))
    if img is None:
        from engine.errors import PermanentStageError

        raise PermanentStageError(f"group {group.id} has no image to measure")
    return img


def prepare_measure(s: Any, group: m.ObservationGroup, settings: Any) -> dict[str, Any]:
    img = _latest_image(s, group)
    known: list[tuple[str, float, float]] = []
    if img.pointing_dec_deg is not None and img.pointing_ra_deg is not None:
        half = (img.params or {}).get("fov_deg", 3.5) / 2 + 0.1
        rows = s.execute(select(m.Source.id, m.Source.ra_deg, m.Source.dec_deg).where(
            m.Source.dec_deg >= img.pointing_dec_deg - half, m.Source.dec_deg <= img.pointing_dec_deg + half))
        cosd = max(math.cos(math.radians(img.pointing_dec_deg)), 1e-3)
        for sid, ra, dec in rows:
            dra = ((ra - img.pointing_ra_deg + 180) % 360 - 180) * cosd
            if abs(dra) <= half:
                known.append((sid, ra, dec))
    return {"image": img.path, "image_id": img.id, "qa_grade": img.qa_grade, "known": known,
            "min_snr": settings.sources.detect_snr, "calibrators": _calibrators_in(img, settings),
            "track_s": _track_s(s, group)}


def _track_s(s: Any, group: m.ObservationGroup) -> float:
    """How long the sky drifted through the beam during the group (the MS's time span)."""
    ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == group.id))
    if ms is not None and ms.start_mjd is not None and ms.end_mjd is not None:
        return max(0.0, (ms.end_mjd - ms.start_mjd) * 86400.0)
    return 0.0


def _calibrators_in(img: m.Image, settings: Any) -> list[dict[str, Any]]:
    """Catalogue calibrators inside the image (flux monitoring): name, position and power law."""
    from engine.calibration.catalogue import merged_catalogue

    if img.pointing_dec_deg is None or img.pointing_ra_deg is None:
        return []
    half = (img.params or {}).get("fov_deg", 3.5) / 2
    cosd = max(math.cos(math.radians(img.pointing_dec_deg)), 1e-3)
    out = []
    for cal in merged_catalogue(settings.calibration.catalogue_files or None):
        dra = ((cal.ra_deg - img.pointing_ra_deg + 180) % 360 - 180) * cosd
        if abs(dra) <= half and abs(cal.dec_deg - img.pointing_dec_deg) <= half:
            out.append({"name": cal.name, "ra_deg": cal.ra_deg, "dec_deg": cal.dec_deg, "flux_jy": cal.flux_jy,
                        "freq_ghz": cal.freq_ghz, "spectral_index": cal.spectral_index})
    return out


SIDEREAL_DEG_PER_S = 360.0 / 86164.0905


def calibrator_fluxes(plane: np.ndarray, header: Any, cals: list[dict[str, Any]], pointing: tuple[float, float],
                      track_s: float = 0.0, min_beam_gain: float = 0.5,
                      min_snr: float = 5.0) -> list[dict[str, Any]]:
    """Forced photometry of calibrators, divided by the primary-beam gain (the images are not
    beam-corrected). The dishes stay at the meridian while the sky drifts, so the gain is the Airy power
    averaged over the source's track during the group (``track_s`` around the phase centre's transit).
    Only where that gain is at least ``min_beam_gain`` and the SNR at least ``min_snr``, so the ratio is
    not dominated by the beam model's edge or by noise."""
    from engine.calibration.beam import airy_power, angular_separation
    from engine.sources.photometry import forced_photometry

    if not cals:
        return []
    freq = float(header.get("CRVAL3") or 1.4e9) if str(header.get("CTYPE3", "FREQ")).startswith("FREQ") else 1.4e9
    rows = forced_photometry(plane, header, [c["ra_deg"] for c in cals], [c["dec_deg"] for c in cals])
    out = []
    for cal, row in zip(cals, rows, strict=True):
        flux, snr = row.get("flux_jy"), row.get("snr")
        if not row.get("inside") or flux is None or not np.isfinite(flux) or snr is None or snr < min_snr:
            continue
        offset = float(angular_separation(math.radians(pointing[0]), math.radians(pointing[1]),
                                          math.radians(cal["ra_deg"]), math.radians(cal["dec_deg"])))
        t = np.linspace(-track_s / 2, track_s / 2, 41) if track_s > 0 else np.zeros(1)
        beam_ra = np.radians(pointing[0] + t * SIDEREAL_DEG_PER_S)  # where the meridian points at time t
        seps = angular_separation(beam_ra, math.radians(pointing[1]), math.radians(cal["ra_deg"]),
                                  math.radians(cal["dec_deg"]))
        gain = float(np.mean(airy_power(seps, freq)))
        if gain < min_beam_gain:
            continue
        alpha = cal["spectral_index"] or 0.0
        catalog = cal["flux_jy"] * (freq / (cal["freq_ghz"] * 1e9)) ** alpha
        out.append({"name": cal["name"], "freq_hz": freq, "apparent_flux_jy": float(flux),
                    "observed_flux_jy": float(flux) / gain, "catalog_flux_jy": float(catalog),
                    "flux_ratio": float(flux) / gain / float(catalog), "beam_gain": gain,
                    "offset_deg": math.degrees(offset), "snr": float(snr)})
    return out


def run_measure(params: dict[str, Any]) -> dict[str, Any]:
    import logging

    from astropy.io import fits

    from engine.sources.finder import find_sources
    from engine.sources.photometry import forced_photometry

    log = logging.getLogger("contimg.stage.measure")
    if params["qa_grade"] == "fail":
        log.warning("image %s failed QA: no photometry recorded from it", params["image"])
        return {"skipped": "image failed QA", "detections": [], "forced": []}
    with fits.open(params["image"], memmap=False) as hdul:
        data, header = np.asarray(hdul[0].data), hdul[0].header.copy()
    plane = data
    while plane.ndim > 2:
        plane = plane[0]
    detections = find_sources(plane, header, detect_sigma=params["min_snr"])
    known = params["known"]
    forced = []
    if known:
        rows = forced_photometry(plane, header, [k[1] for k in known], [k[2] for k in known])
        for (sid, _, _), row in zip(known, rows, strict=True):
            if row.get("inside"):
                forced.append({"source_id": sid, **row})
    log.info("found %d sources above %.0f sigma; forced photometry at %d known positions", len(detections),
             params["min_snr"], len(forced))
    cal_flux = []
    if params.get("calibrators") and "CRVAL1" in header:
        cal_flux = calibrator_fluxes(plane, header, params["calibrators"],
                                     (float(header["CRVAL1"]), float(header["CRVAL2"])), params.get("track_s", 0.0))
        for c in cal_flux:
            log.info("calibrator %s: %.3f Jy observed (beam-corrected, gain %.2f) vs %.3f Jy catalogue: ratio %.3f",
                     c["name"], c["observed_flux_jy"], c["beam_gain"], c["catalog_flux_jy"], c["flux_ratio"])
    return _clean({"detections": detections, "forced": forced, "calibrator_flux": cal_flux})


def record_measure(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any) -> None:
    from engine.sources.crossmatch import crossmatch

    if outcome.get("skipped"):
        return
    img = _latest_image(s, group)
    mjd = img.mid_mjd or mid_mjd(group)
    when = img.created_at
    s.query(m.Photometry).filter(m.Photometry.image_id == img.id).delete()  # a re-measure replaces
    dets = outcome["detections"]
    radius = settings.sources.match_radius_arcsec
    touched: set[str] = set()
    if dets:
        half = 3.0
        cands = list(s.execute(select(m.Source.id, m.Source.ra_deg, m.Source.dec_deg).where(
            m.Source.dec_deg >= min(d["dec_deg"] for d in dets) - half,
            m.Source.dec_deg <= max(d["dec_deg"] for d in dets) + half)))
        match = crossmatch([d["ra_deg"] for d in dets], [d["dec_deg"] for d in dets],
                           [c[1] for c in cands], [c[2] for c in cands], radius_arcsec=radius)
        detected: set[str] = set()
        for det, idx in zip(dets, match["index"], strict=True):
            sid = cands[int(idx)][0] if idx >= 0 else None
            if sid is None or sid in detected:
                src = m.Source(ra_deg=det["ra_deg"], dec_deg=det["dec_deg"], name=_name(det["ra_deg"], det["dec_deg"]),
                               first_detected_at=when)
                s.add(src)
                s.flush()
                sid = src.id
            detected.add(sid)
            touched.add(sid)
            s.add(m.Photometry(source_id=sid, image_id=img.id, mjd=mjd, ra_deg=det["ra_deg"], dec_deg=det["dec_deg"],
                               peak_flux_jy=det["peak_jy"], flux_jy=det["int_flux_jy"],
                               flux_err_jy=det["int_flux_err_jy"], local_rms_jy=det["local_rms_jy"],
                               snr=det["snr"], forced=False))
    for f in outcome["forced"]:
        if f["source_id"] in touched or f.get("flux_jy") is None:
            continue
        touched.add(f["source_id"])
        s.add(m.Photometry(source_id=f["source_id"], image_id=img.id, mjd=mjd, ra_deg=f["ra_deg"],
                           dec_deg=f["dec_deg"], flux_jy=f["flux_jy"], flux_err_jy=f.get("flux_err_jy"),
                           local_rms_jy=f.get("local_rms_jy"), snr=f.get("snr"), forced=True))
    s.flush()
    for sid in touched:
        update_source_stats(s, sid, img.id)
    _record_calibrator_flux(s, group, img, mjd, outcome.get("calibrator_flux") or [], settings)


def _record_calibrator_flux(s: Any, group: m.ObservationGroup, img: m.Image, mjd: float,
                            rows: list[dict[str, Any]], settings: Any) -> None:
    """Store each calibrator measurement with the QA of the calibration that produced the image; a ratio
    off by more than ``calibration.flux_alert_fraction`` raises an alert naming the calibrator."""
    s.query(m.CalibratorFlux).filter(m.CalibratorFlux.image_id == img.id).delete()  # a re-measure replaces
    ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == group.id))
    sets = list(ms.cal_sets_applied or []) if ms else []
    qa = {}
    if sets:
        cs = s.scalar(select(m.CalibrationSet).where(m.CalibrationSet.name == sets[0]))
        qa = (cs.qa_metrics or {}) if cs else {}
    limit = settings.calibration.flux_alert_fraction
    for r in rows:
        s.add(m.CalibratorFlux(calibrator_name=r["name"], image_id=img.id, group_id=group.id, mjd=mjd,
                               freq_hz=r["freq_hz"], observed_flux_jy=r["observed_flux_jy"],
                               apparent_flux_jy=r["apparent_flux_jy"], catalog_flux_jy=r["catalog_flux_jy"],
                               flux_ratio=r["flux_ratio"], beam_gain=r["beam_gain"], offset_deg=r["offset_deg"],
                               snr=r["snr"], cal_sets=sets, phase_rms_deg=_finite_or_none(qa.get("phase_scatter_deg")),
                               amp_rms=_finite_or_none(qa.get("amp_scatter"))))
        if abs(r["flux_ratio"] - 1.0) > limit:
            s.add(m.Alert(alert_type="calibrator_flux", severity="warning", source="measure",
                          calibrator_name=r["name"],
                          message=f"{r['name']} measured at {r['observed_flux_jy']:.3f} Jy in image {img.id} "
                                  f"(catalogue {r['catalog_flux_jy']:.3f} Jy): ratio {r['flux_ratio']:.3f}, more "
                                  f"than {100 * limit:.0f}% off; calibration sets {', '.join(sets) or 'none'}",
                          details={"image_id": img.id, "group_id": group.id, "flux_ratio": r["flux_ratio"]}))


def _finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def update_source_stats(s: Any, source_id: str, latest_image_id: str | None = None) -> None:
    from engine.sources.variability import variability_metrics

    src = s.get_one(m.Source, source_id)
    rows = list(s.execute(select(m.Photometry.flux_jy, m.Photometry.flux_err_jy, m.Photometry.forced,
                                 m.Photometry.peak_flux_jy, m.Image.created_at)
                          .join(m.Image, m.Image.id == m.Photometry.image_id)
                          .where(m.Photometry.source_id == source_id).order_by(m.Photometry.mjd)))
    detections = [r for r in rows if not r.forced]
    src.n_images = len(rows)
    src.n_detections = len(detections)
    if detections:
        src.first_detected_at = min(r.created_at for r in detections)
        src.last_detected_at = max(r.created_at for r in detections)
        src.peak_flux_jy = max(r.peak_flux_jy or r.flux_jy for r in detections)
    fluxes = [r.flux_jy for r in rows if r.flux_jy is not None]
    src.mean_flux_jy = float(np.mean(fluxes)) if fluxes else None
    if latest_image_id:
        src.latest_image_id = latest_image_id
    metrics = variability_metrics([r.flux_jy for r in rows], [r.flux_err_jy or np.nan for r in rows])
    if metrics:
        clean = _clean(metrics)
        src.eta, src.v = clean.get("eta"), clean.get("v")
        src.chi2_nu, src.modulation_index = clean.get("chi2_nu"), clean.get("modulation_index")


def _name(ra: float, dec: float) -> str:
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    c = SkyCoord(ra * u.deg, dec * u.deg)
    return "DSA J" + c.ra.to_string(unit=u.hourangle, sep="", precision=1, pad=True) + \
        c.dec.to_string(sep="", precision=0, alwayssign=True, pad=True)


IMAGE = Stage("image", states.CALIBRATED, states.IMAGING, states.IMAGED, "engine.processing.stage_image:run_image",
              prepare_image, record_image)
MEASURE = Stage("measure", states.IMAGED, states.MEASURING, states.COMPLETE,
                "engine.processing.stage_image:run_measure", prepare_measure, record_measure)
