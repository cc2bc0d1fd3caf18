"""Notebook templates for the dashboard's Jupyter page, built with nbformat.

Each template is a real analysis that runs against this pipeline's own products:
the database is opened read-only (``mode=ro``), FITS files through astropy. The
parameters the user enters become the first code cell (papermill style), so the
notebook says what it was made for and can be re-run with other values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


class TemplateError(ValueError):
    """Unknown template or bad parameters; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # string | number | boolean | source_id | image_id
    required: bool
    description: str


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    description: str
    category: str
    parameters: tuple[Param, ...]
    cells: tuple[tuple[str, str], ...] = field(repr=False)  # (kind, source)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "category": self.category,
                "parameters": [{"name": p.name, "type": p.type, "required": p.required,
                                "description": p.description} for p in self.parameters]}


_OPEN_DB = '''import sqlite3
db = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True)  # read-only: a notebook never changes the pipeline
db.row_factory = sqlite3.Row'''

TEMPLATES: dict[str, Template] = {t.id: t for t in (
    Template(
        "source-light-curve", "Source light curve",
        "Flux measurements of one source across images, with its variability statistics (eta, V, chi2).",
        "source_analysis",
        (Param("source_id", "source_id", True, "Source id (from the Sources page)"),),
        (("markdown", "# Light curve of a source\nPhotometry from every image that measured it."),
         ("code", _OPEN_DB),
         ("code", '''src = db.execute("SELECT * FROM sources WHERE id = ?", (source_id,)).fetchone()
if src is None:
    raise SystemExit(f"no source {source_id!r} in {DB_PATH}")
print(f"{src['name'] or src['id']}: RA {src['ra_deg']:.5f} deg, Dec {src['dec_deg']:.5f} deg, "
      f"{src['n_detections']} detections in {src['n_images']} images")
print(f"eta = {src['eta']}, V = {src['v']}, chi2_nu = {src['chi2_nu']}")'''),
         ("code", '''import numpy as np
rows = db.execute("SELECT mjd, flux_jy, flux_err_jy, forced FROM photometry WHERE source_id = ? ORDER BY mjd",
                  (source_id,)).fetchall()
mjd = np.array([r["mjd"] for r in rows])
flux = np.array([r["flux_jy"] for r in rows])
err = np.array([r["flux_err_jy"] if r["flux_err_jy"] is not None else np.nan for r in rows])
for r in rows:
    print(f"MJD {r['mjd']:.5f}  {1e3 * r['flux_jy']:9.3f} mJy" + ("  (forced)" if r["forced"] else ""))
if len(flux):
    print(f"mean {1e3 * flux.mean():.3f} mJy, rms {1e3 * flux.std():.3f} mJy over {len(flux)} epochs")'''),
         ("code", '''import matplotlib.pyplot as plt
forced = np.array([bool(r["forced"]) for r in rows], dtype=bool)
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.errorbar(mjd[~forced], 1e3 * flux[~forced], yerr=1e3 * err[~forced], fmt="o", label="detections")
if forced.any():
    ax.errorbar(mjd[forced], 1e3 * flux[forced], yerr=1e3 * err[forced], fmt="s", mfc="none", label="forced")
ax.set_xlabel("MJD")
ax.set_ylabel("flux density (mJy)")
ax.set_title(src["name"] or src["id"])
ax.legend()
plt.show()'''),
         ),
    ),
    Template(
        "image-inspection", "Image inspection",
        "Header, WCS, beam and pixel statistics of one image, and the sources measured on it.",
        "image_inspection",
        (Param("image_id", "image_id", True, "Image id (from the Images page)"),),
        (("markdown", "# Inspect an image"),
         ("code", _OPEN_DB),
         ("code", '''img = db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
if img is None:
    raise SystemExit(f"no image {image_id!r} in {DB_PATH}")
print(img["path"], "| QA:", img["qa_grade"], "|", img["qa_summary"])'''),
         ("code", '''import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
with fits.open(img["path"]) as hdul:
    header, data = hdul[0].header, np.squeeze(hdul[0].data)
wcs = WCS(header).celestial
print(wcs)
print(f"shape {data.shape}, peak {np.nanmax(data):.4g} Jy/beam, "
      f"robust rms {1.4826 * np.nanmedian(np.abs(data - np.nanmedian(data))):.4g} Jy/beam")
print("beam:", header.get("BMAJ", 0) * 3600, "x", header.get("BMIN", 0) * 3600, "arcsec, PA", header.get("BPA"))'''),
         ("code", '''import matplotlib.pyplot as plt
fig = plt.figure(figsize=(6, 5))
ax = fig.add_subplot(projection=wcs)
lo, hi = np.nanpercentile(data, [1, 99.5])
im = ax.imshow(data, origin="lower", vmin=lo, vmax=hi, cmap="inferno")
ax.set_xlabel("RA")
ax.set_ylabel("Dec")
fig.colorbar(im, ax=ax, label="Jy/beam")
plt.show()'''),
         ("code", '''for r in db.execute("SELECT s.name, s.id, p.flux_jy, p.snr FROM photometry p JOIN sources s "
                   "ON s.id = p.source_id WHERE p.image_id = ? ORDER BY p.flux_jy DESC LIMIT 20", (image_id,)):
    print(f"{r['name'] or r['id']:<24} {1e3 * r['flux_jy']:9.3f} mJy  SNR {r['snr'] or 0:.1f}")'''),
         ),
    ),
    Template(
        "pipeline-overview", "Pipeline overview",
        "What the pipeline holds: groups by state, images by QA grade, calibration sets, the brightest sources.",
        "data_exploration",
        (Param("top_n", "number", False, "How many of the brightest sources to list (default 10)"),),
        (("markdown", "# Pipeline overview"),
         ("code", _OPEN_DB),
         ("code", '''for table, col in (("observation_groups", "state"), ("images", "qa_grade"), ("calibration_sets", "status")):
    print(table, dict(db.execute(f"SELECT {col}, count(*) FROM {table} GROUP BY {col}").fetchall()))'''),
         ("code", '''n = int(top_n or 10)
for r in db.execute("SELECT name, id, peak_flux_jy, n_detections FROM sources ORDER BY peak_flux_jy DESC "
                    "LIMIT ?", (n,)):
    print(f"{r['name'] or r['id']:<24} {r['peak_flux_jy'] or 0:9.4f} Jy  {r['n_detections']} detections")'''),
         ("code", '''import matplotlib.pyplot as plt
import numpy as np
states = dict(db.execute("SELECT state, count(*) FROM observation_groups GROUP BY state").fetchall())
fluxes = [r[0] for r in db.execute("SELECT peak_flux_jy FROM sources WHERE peak_flux_jy > 0")]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
a1.bar(list(states) or ["(none)"], list(states.values()) or [0])
a1.set_title("groups by state")
a1.tick_params(axis="x", rotation=45)
if fluxes:
    a2.hist(np.log10(fluxes), bins=20)
a2.set_xlabel("log10 peak flux density (Jy)")
a2.set_title("sources")
plt.tight_layout()
plt.show()'''),
         ),
    ),
)}


def _coerce(p: Param, value: Any) -> Any:
    if value is None or value == "":
        if p.required:
            raise TemplateError(f"parameters.{p.name} is required ({p.description})")
        return None
    if p.type == "number":
        try:
            return float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            raise TemplateError(f"parameters.{p.name} must be a number, not {value!r}") from None
    if p.type == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise TemplateError(f"parameters.{p.name} must be true or false, not {value!r}")
    return str(value)


def sqlite_only(settings: Any) -> None:
    """The templates open the SQLite file read-only; on a PostgreSQL database a TemplateError says so."""
    if not getattr(settings, "database_is_sqlite", True):
        raise TemplateError("the notebook templates open the SQLite database file read-only; this data dir's "
                            f"database is {settings.database_label}: connect to it from the notebook with "
                            "psycopg and a read-only PostgreSQL role instead (templates for PostgreSQL are "
                            "not done)")


def render(template_id: str, parameters: dict[str, Any], db_path: str, kernel_name: str = "python3") -> str:
    """The notebook (JSON text) for ``template_id`` with ``parameters`` filled in."""
    t = TEMPLATES.get(template_id)
    if t is None:
        raise TemplateError(f"template_id: no template {template_id!r} (available: {', '.join(TEMPLATES)})")
    known = {p.name for p in t.parameters}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise TemplateError(f"parameters: {', '.join(unknown)} not used by template {template_id!r}")
    values = {p.name: _coerce(p, parameters.get(p.name)) for p in t.parameters}
    lines = [f"# parameters of template {t.id!r}", f"DB_PATH = {json.dumps(db_path)}"]
    lines += [f"{k} = {v!r}" for k, v in values.items()]
    cells = [new_code_cell("\n".join(lines), metadata={"tags": ["parameters"]})]
    for kind, source in t.cells:
        cells.append(new_markdown_cell(source) if kind == "markdown" else new_code_cell(source))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": kernel_name, "display_name": "Python 3", "language": "python"},
        "contimg": {"template": t.id, "parameters": values}})
    nbformat.validate(nb)
    return nbformat.writes(nb)
