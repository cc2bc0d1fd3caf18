"""Every notebook template runs: executed by nbclient on a real kernel against a seeded data dir, without
errors, and each produces its figure."""

from __future__ import annotations

from datetime import UTC, datetime

import nbformat
import numpy as np
import pytest
from astropy.io import fits
from nbclient import NotebookClient

from engine.db import models as m
from engine.notebooks import TEMPLATES, TemplateError, render


def _seed(db, tmp_path) -> str:
    path = tmp_path / "img.fits"
    hdr = fits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "CRVAL1": 150.0, "CRVAL2": 55.0,
                       "CDELT1": -1e-3, "CDELT2": 1e-3, "CRPIX1": 33, "CRPIX2": 33, "BMAJ": 0.01, "BMIN": 0.008,
                       "BPA": 10.0, "BUNIT": "JY/BEAM"})
    data = np.random.default_rng(1).normal(0, 1e-3, (64, 64)).astype(np.float32)
    data[32, 32] = 0.5
    fits.PrimaryHDU(data, hdr).writeto(path)
    with db.session() as s:
        s.add(m.ObservationGroup(id="g1", group_time=datetime(2026, 11, 1, tzinfo=UTC), state="imaged"))
        s.add(m.Image(id="img1", path=str(path), mid_mjd=61000.5, qa_grade="A", qa_summary="ok"))
        s.add(m.Source(id="s1", name="DSA J1000+5500", ra_deg=150.0, dec_deg=55.0, n_detections=3, n_images=4,
                       peak_flux_jy=0.5, eta=1.2, v=0.05, chi2_nu=1.1))
        s.flush()
        for i, f in enumerate((0.48, 0.5, 0.52, 0.47)):
            s.add(m.Photometry(source_id="s1", image_id="img1", mjd=61000.5 + i, flux_jy=f, flux_err_jy=0.01,
                               snr=40.0, forced=i == 3))
    return str(path)


PARAMS = {"source-light-curve": {"source_id": "s1"}, "image-inspection": {"image_id": "img1"},
          "pipeline-overview": {"top_n": 5}}


def test_every_template_executes_and_draws(db, tmp_path):
    _seed(db, tmp_path)
    assert set(PARAMS) == set(TEMPLATES)
    for tid, params in PARAMS.items():
        nb = nbformat.reads(render(tid, params, str(db.path)), as_version=4)
        nbformat.validate(nb)
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                       ).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], tid
        pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
        assert len(pngs) == 1, f"{tid}: expected one figure, got {len(pngs)}"
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert {"source-light-curve": "DSA J1000+5500", "image-inspection": "peak 0.5",
                "pipeline-overview": "imaged"}[tid] in text, text


def test_render_rejects_bad_parameters(db):
    with pytest.raises(TemplateError, match="parameters.source_id is required"):
        render("source-light-curve", {}, str(db.path))
    with pytest.raises(TemplateError, match="parameters.top_n must be a number"):
        render("pipeline-overview", {"top_n": "many"}, str(db.path))
    with pytest.raises(TemplateError, match="no template 'nope'"):
        render("nope", {}, str(db.path))
