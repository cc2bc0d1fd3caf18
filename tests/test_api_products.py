"""Images, sources and Measurement Sets over HTTP, on a data dir the real pipeline produced."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from astropy.io import fits



@pytest.fixture
async def prt(flow_runtime_factory):  # type: ignore[no-untyped-def]
    async with flow_runtime_factory() as rt:
        yield rt


async def get(rt: Any, path: str, *, raw: bool = False, **kw: Any) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(rt.api_url + path, **kw) as resp:
            body = await resp.read() if raw else (await resp.json() if "json" in resp.content_type else await resp.text())
            return resp.status, body, dict(resp.headers)


async def test_images_list_detail_files(prt: Any) -> None:
    status, images, _ = await get(prt, "/api/v1/images")
    assert status == 200 and isinstance(images, list) and len(images) == 2
    first = images[0]
    assert set(first) == {"id", "path", "qa_grade", "created_at", "run_id", "pointing_ra_deg", "pointing_dec_deg"}
    assert first["path"].endswith("-image.fits") and first["qa_grade"] in ("good", "warn", "fail")
    assert images[0]["created_at"] >= images[1]["created_at"]
    status, detail, _ = await get(prt, f"/api/v1/images/{first['id']}")
    assert status == 200 and detail["beam_major_arcsec"] > 0 and detail["noise_jy"] > 0 and detail["ms_path"]
    status, body, headers = await get(prt, f"/api/v1/images/{first['id']}/fits", raw=True)
    assert status == 200 and headers["Content-Type"] == "application/fits"
    hdul = fits.open(io.BytesIO(body))
    assert hdul[0].header["BUNIT"].lower() == "jy/beam"
    status, body, headers = await get(prt, f"/api/v1/images/{first['id']}/thumbnail", raw=True,
                                      params={"size": "128"})
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    status, body, _ = await get(prt, f"/api/v1/images/{first['id']}/cutout", raw=True,
                                params={"ra": str(detail["pointing_ra_deg"]), "dec": str(detail["pointing_dec_deg"]),
                                        "width": "10", "height": "10", "unit": "arcmin"})
    assert status == 200 and fits.open(io.BytesIO(body))[0].data.shape[0] > 4
    status, err, _ = await get(prt, "/api/v1/images/nope")
    assert status == 404 and err["code"] == "NOT_FOUND"
    status, body, _ = await get(prt, "/api/v1/images/bulk-download", raw=True,
                                params={"ids": ",".join(i["id"] for i in images), "format": "zip"})
    assert status == 200 and body[:2] == b"PK"
    status, prov, _ = await get(prt, f"/api/v1/images/{first['id']}/provenance")
    assert prov["imageUrl"] == f"/images/{first['id']}" and prov["msUrl"].startswith("/ms/%2F")


async def test_sources_and_light_curves(prt: Any) -> None:
    status, sources, _ = await get(prt, "/api/v1/sources")
    assert status == 200 and len(sources) > 0
    src = max(sources, key=lambda s: s["num_images"] or 0)
    assert set(src) == {"id", "name", "ra_deg", "dec_deg", "image_id", "num_images", "eta", "v", "peak_flux_jy"}
    status, detail, _ = await get(prt, f"/api/v1/sources/{src['id']}")
    assert status == 200 and detail["contributing_images"]
    point = detail["contributing_images"][0]
    assert point["flux_jy"] is not None and point["created_at"] and point["path"].endswith(".fits")
    status, text, _ = await get(prt, f"/api/v1/sources/{src['id']}/export")
    assert status == 200 and text.startswith("mjd,flux_jy")
    status, var, _ = await get(prt, f"/api/sources/{src['id']}/variability")
    assert status == 200 and var["n_epochs"] == len(detail["contributing_images"])
    status, text, _ = await get(prt, "/api/v1/sources/export", params={"ids": src["id"]})
    assert status == 200 and src["id"] in text
    status, res, _ = await get(prt, "/api/v1/external/sesame/resolve", params={"name": "3C286"})
    assert status == 200 and abs(res["ra"] - 202.78) < 0.1
    status, err, _ = await get(prt, "/api/v1/external/sesame/resolve", params={"name": "M31"})
    assert status == 404 and "not reachable" in err["detail"]


async def test_measurement_set_endpoints(prt: Any) -> None:
    _, images, _ = await get(prt, "/api/v1/images")
    _, detail, _ = await get(prt, f"/api/v1/images/{images[0]['id']}")
    ms = detail["ms_path"]
    enc = quote(ms, safe="")
    status, meta, _ = await get(prt, f"/api/v1/ms/{enc}/metadata")
    assert status == 200 and meta["path"] == ms and meta["num_channels"] == 768
    assert meta["calibrator_matches"] and {m["type"] for m in meta["calibrator_matches"]} == {"bandpass", "gain"}
    status, layout, _ = await get(prt, f"/api/v1/v1/ms/{enc}/antennas")
    assert status == 200 and layout["total_baselines"] == 45  # 10 antennas in the tiny preset
    active = [a for a in layout["antennas"] if a["baseline_count"]]
    assert len(active) == 10 and all(a["baseline_count"] == 9 for a in active)
    status, png, headers = await get(prt, f"/api/v1/ms/{enc}/raster", raw=True, params={"xaxis": "frequency"})
    assert status == 200 and png[:4] == b"\x89PNG"
    status, err, _ = await get(prt, f"/api/v1/ms/{quote('/etc/passwd', safe='')}/metadata")
    assert status == 404 and err["code"] == "MS_NOT_FOUND"
    status, body, _ = await get(prt, f"/api/v1/ms/{enc}/download", raw=True)
    assert status == 200
    names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
    assert any(n.endswith("table.dat") for n in names) and all(n.startswith(Path(ms).name) for n in names)


async def test_image_writes(prt: Any) -> None:
    _, images, _ = await get(prt, "/api/v1/images")
    iid = images[-1]["id"]
    auth = {"Authorization": f"Bearer {prt.token}"}
    async with aiohttp.ClientSession() as http:
        regions = {"format": "json", "regions": [{"id": "r1", "shape": "circle", "x": 10, "y": 12, "radius": 4}]}
        async with http.post(prt.api_url + f"/api/v1/images/{iid}/regions", json=regions) as resp:
            assert resp.status == 401  # a write acts for a person: anonymous callers are refused first
        async with http.post(prt.api_url + f"/api/v1/images/{iid}/regions", headers=auth, json=regions) as resp:
            assert resp.status == 200 and (await resp.json())["saved"] == 1
        async with http.post(prt.api_url + f"/api/v1/images/{iid}/masks", headers=auth,
                             json={"format": "ds9", "regions": "# Region file\nfk5\ncircle(128.7,54.5,30\")\n"}) as resp:
            assert resp.status == 200 and (await resp.json())["region_count"] == 1
        async with http.post(prt.api_url + f"/api/v1/images/{iid}/rating", headers=auth,
                             json={"itemId": iid, "confidence": "true", "tagId": "artifact", "notes": "sidelobes"}) as r:
            assert r.status == 200
        async with http.get(prt.api_url + f"/api/v1/images/{iid}") as resp:
            assert (await resp.json())["qa_grade"] == "fail"
        async with http.get(prt.api_url + "/api/v1/images") as resp:  # the cached listing follows the change
            etag = resp.headers["ETag"]
            assert next(i for i in await resp.json() if i["id"] == iid)["qa_grade"] == "fail"
        async with http.get(prt.api_url + "/api/v1/images", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304


async def test_calibrator_flux_measured_in_a_wide_image_and_served(prt: Any, tmp_path: Path) -> None:
    """J0834+5534 lies 1 deg from the pointing, outside the flow's narrow images: image the calibrated
    calibrator MS wide, measure it as the measure stage does (beam-corrected over the drift), and serve it."""
    import asyncio

    from engine.calibration.catalogue import find_calibrator
    from engine.db import models as m
    from engine.imaging.pipeline import image_ms
    from engine.processing.stage_image import _record_calibrator_flux, calibrator_fluxes

    with prt.db.session() as s:
        ms = s.query(m.MeasurementSet).order_by(m.MeasurementSet.start_mjd).first()
        group = s.get(m.ObservationGroup, ms.group_id)
        img = s.query(m.Image).filter(m.Image.group_id == group.id).one()
        ms_path, track_s = ms.path, (ms.end_mjd - ms.start_mjd) * 86400
    out = await asyncio.to_thread(image_ms, ms_path, str(tmp_path), {"fov_deg": 2.4, "niter": 300,
                                                                     "pixels_per_beam": 2.5})
    with fits.open(out["products"]["image"]) as hdul:
        plane, header = hdul[0].data[0, 0], hdul[0].header
    c = find_calibrator("J0834+5534")
    cal = {"name": c.name, "ra_deg": c.ra_deg, "dec_deg": c.dec_deg, "flux_jy": c.flux_jy, "freq_ghz": c.freq_ghz,
           "spectral_index": c.spectral_index}
    rows = calibrator_fluxes(plane, header, [cal], (header["CRVAL1"], header["CRVAL2"]), track_s)
    assert len(rows) == 1 and 0.5 < rows[0]["beam_gain"] < 0.8 and abs(rows[0]["offset_deg"] - 1.0) < 0.05
    assert abs(rows[0]["flux_ratio"] - 1) < 0.05, rows  # simulated at the catalogue's flux

    with prt.db.session() as s:  # record it, and a bad one that must raise an alert
        g, i = s.get(m.ObservationGroup, group.id), s.get(m.Image, img.id)
        _record_calibrator_flux(s, g, i, 60953.6457, rows + [{**rows[0], "flux_ratio": 0.6,
                                                               "observed_flux_jy": 3.0}], prt.settings)
    status, fm, _ = await get(prt, "/api/v1/health/flux-monitoring")
    entry = fm["calibrators"][0]
    assert status == 200 and entry["calibrator_name"] == "J0834+5534" and entry["n_measurements"] == 2
    assert entry["alerts_count"] == 1 and entry["is_stable"] is False and fm["total_alerts"] == 1
    status, hist, _ = await get(prt, f"/api/v1/health/flux-monitoring/{quote('J0834+5534', safe='')}/history",
                                params={"days": 3650})
    assert status == 200 and len(hist["measurements"]) == 2 and hist["stats"]["min_flux_ratio"] == 0.6
    assert hist["measurements"][0]["phase_rms_deg"] is not None  # QA of the set that calibrated the image
    status, _, _ = await get(prt, "/api/v1/health/flux-monitoring/3C999/history")
    assert status == 404
