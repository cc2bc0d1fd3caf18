"""The Data screen: MS, image and source views, their keyset pages, filters, details and previews."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import insert
from tui_helpers import FIXED_NOW, make_app, settle

from engine.db import Database
from engine.db import models as m
from engine.processing.stage_image import update_source_stats
from engine.services import Services
from engine.services.data import SOURCE_ORDERS, DataFilter, DataFilterError
from engine.settings import Settings
from screens.choose import ChoiceScreen
from screens.help import HelpScreen
from screens.image_detail import ImageDetailScreen
from screens.ms_detail import MsDetailScreen
from screens.prompt import PromptScreen
from screens.source_detail import SourceDetailScreen
from screens.widgets.paged_table import PagedTable
from screens.widgets.thumbnail import UPPER_HALF, Thumbnail, fit

MJD_NOW = 61373.5  # FIXED_NOW (2026-11-29 12:00 UTC)


def sky(n: int = 64, spots: tuple[tuple[int, int, float], ...] = ((20, 40, 1.0), (44, 16, 0.6))) -> np.ndarray:
    """A noise field with Gaussian sources at (row, col), as a grey PNG would hold it (row 0 = north)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:n, 0:n]
    img = rng.normal(0.05, 0.02, (n, n))
    for r, c, amp in spots:
        img += amp * np.exp(-((y - r) ** 2 + (x - c) ** 2) / (2 * 2.0**2))
    return (np.clip(img / img.max(), 0, 1) * 255).astype(np.uint8)


def write_fits(path: Path, plane: np.ndarray) -> None:
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(plane, np.float32)[None, None]).writeto(path)


def seed(db: Database, settings: Settings) -> dict[str, str]:
    """A night of products: three groups with MS and images (PNG, FITS-only, nothing on disk), and sources
    whose photometry makes a light curve (detections and forced points)."""
    images_dir, ms_dir = settings.images_dir, settings.ms_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    ms_dir.mkdir(parents=True, exist_ok=True)
    png = images_dir / "2026-11-29T11:00:00-image.png"
    PILImage.fromarray(sky(), mode="L").save(png)
    (images_dir / "2026-11-29T11:00:00-image.fits").write_bytes(b"")  # present; the PNG is what is drawn
    fits_only = images_dir / "2026-11-29T10:00:00-image.fits"
    write_fits(fits_only, sky(48, ((8, 8, 1.0),))[::-1].astype(float))  # FITS row 0 is the south
    groups = [("2026-11-29T09:00:00", 3, "fail", None), ("2026-11-29T10:00:00", 2, "warn", None),
              ("2026-11-29T11:00:00", 1, "good", str(png))]
    with db.session() as s:
        for gid, hours, grade, png_path in groups:
            t = FIXED_NOW - timedelta(hours=hours)
            s.add(m.ObservationGroup(id=gid, group_time=t, state="complete", n_subbands=16, dec_deg=55.57,
                                     state_changed_at=t))
            s.flush()
            s.add(m.MeasurementSet(group_id=gid, path=str(ms_dir / f"{gid}.ms"), n_rows=162_864, n_channels=768,
                                   n_antennas=117, integration_time_s=12.88, start_mjd=MJD_NOW - hours / 24,
                                   end_mjd=MJD_NOW - hours / 24 + 5 / 1440, phase_ra_deg=128.73,
                                   phase_dec_deg=55.57, size_bytes=int(11.5 * 2**30),
                                   flagged_fraction={"fail": 0.412, "warn": 0.183, "good": 0.061}[grade],
                                   qa_grade=grade, qa_summary=f"flags {grade}", cal_sets_applied=["cal_0834"],
                                   created_at=t + timedelta(minutes=6)))
            s.add(m.Image(id=f"img-{hours}", group_id=gid, path=str(images_dir / f"{gid}-image.fits"),
                          png_path=png_path, ms_path=str(ms_dir / f"{gid}.ms"), qa_grade=grade,
                          qa_summary={"fail": "noise 4.1× thermal; RFI stripes", "warn": "noise 1.6× thermal",
                                      "good": "noise 1.1× thermal"}[grade],
                          noise_jy={"fail": 0.0051, "warn": 0.0019, "good": 0.00121}[grade],
                          peak_flux_jy={"fail": 2.9, "warn": 3.05, "good": 3.104}[grade],
                          dynamic_range={"fail": 569, "warn": 1605, "good": 2565}[grade],
                          beam_major_arcsec=50.2, beam_minor_arcsec=33.9, beam_pa_deg=-12.5, backend="builtin",
                          data_column="CORRECTED_DATA", mid_mjd=MJD_NOW - hours / 24, pointing_ra_deg=128.73,
                          pointing_dec_deg=55.57, created_at=t + timedelta(minutes=20)))
        # earlier epochs for the light curve (no files: their previews say why)
        for day in range(1, 6):
            s.add(m.Image(id=f"old-{day}", path=f"/archive/2026-11-{29 - day}T11:00:00-image.fits",
                          qa_grade="good", noise_jy=0.0012, created_at=FIXED_NOW - timedelta(days=day),
                          mid_mjd=MJD_NOW - day))
        s.flush()
        s.add(m.Source(id="src-var", name="DSA J083412.3+553412", ra_deg=128.5513, dec_deg=55.5700))
        s.add(m.Source(id="src-steady", name="DSA J084501.0+560002", ra_deg=131.2542, dec_deg=56.0006))
        s.add(m.Source(id="src-new", name="DSA J080000.0+550000", ra_deg=120.0, dec_deg=55.0))
        s.flush()
        curve = [("old-5", 12.0, False), ("old-4", 14.5, False), ("old-3", 21.0, False), ("old-2", 9.0, False),
                 ("old-1", 3.1, True), ("img-3", 2.4, True), ("img-2", 11.0, False), ("img-1", 18.0, False)]
        mjds = {"old-5": MJD_NOW - 5, "old-4": MJD_NOW - 4, "old-3": MJD_NOW - 3, "old-2": MJD_NOW - 2,
                "old-1": MJD_NOW - 1, "img-3": MJD_NOW - 3 / 24, "img-2": MJD_NOW - 2 / 24, "img-1": MJD_NOW - 1 / 24}
        for i, (image_id, mjy, forced) in enumerate(curve):
            s.add(m.Photometry(source_id="src-var", image_id=image_id, mjd=mjds[image_id], flux_jy=mjy / 1e3,
                               flux_err_jy=1.2e-3, peak_flux_jy=mjy / 1e3, snr=mjy / 1.2, forced=forced))
            s.add(m.Photometry(source_id="src-steady", image_id=image_id, mjd=mjds[image_id],
                               flux_jy=(50 + (i % 3 - 1) * 0.4) / 1e3, flux_err_jy=1.2e-3,
                               snr=40.0, forced=False))
        s.add(m.Photometry(source_id="src-new", image_id="img-1", mjd=mjds["img-1"], flux_jy=0.0061,
                           flux_err_jy=0.0012, snr=5.1, forced=False))
        s.flush()
        for sid, latest in (("src-var", "img-1"), ("src-steady", "img-1"), ("src-new", "img-1")):
            update_source_stats(s, sid, latest)  # the engine's own statistics (η, V, counts)
    return {"png": str(png), "fits": str(fits_only)}


def rows(app) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    table = app.screen.table()
    return [table._row(i).cells for i in range(table.total) if table._row(i) is not None]


async def open_data(pilot, view: str = "i") -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("5")
    await settle(pilot)
    if view != "i":
        await pilot.press(view)
        await settle(pilot)


# ---- the service: keyset pages agree with offset pages in every order ---------------------------
def test_keyset_pages_match_offset_pages_in_every_order(db: Database, settings: Settings) -> None:
    """Ties and NULLs included: continuing by keyset (down or up) gives exactly the offset read."""
    rng = np.random.default_rng(3)
    with db.session() as s:
        s.execute(insert(m.Source), [
            {"id": f"s{i:04d}", "name": None if i % 17 == 0 else f"DSA J{i % 50:04d}", "ra_deg": float(i),
             "dec_deg": 50.0, "n_detections": int(rng.integers(0, 4)), "n_images": 5,
             "mean_flux_jy": None if i % 5 == 0 else float(rng.integers(0, 3)),
             "eta": None if i % 3 == 0 else float(rng.integers(0, 4)), "v": 0.1} for i in range(730)])
    data = Services(db, settings).data
    for order in SOURCE_ORDERS:
        full = data.source_window(0, 1000, order=order)
        ids = [r.id for r in full.rows]
        assert len(set(ids)) == 730 and full.total == 730
        for start in (0, 100, 400, 600):
            page = data.source_window(start, 100, order=order)
            assert [r.id for r in page.rows] == ids[start:start + 100], (order, start)
            nxt = data.source_window(start + 100, 100, order=order, after=page.keys[-1])
            assert [r.id for r in nxt.rows] == ids[start + 100:start + 200], (order, start)
            if start:
                prev = data.source_window(start - 100, 100, order=order, before=page.keys[0])
                assert [r.id for r in prev.rows] == ids[start - 100:start], (order, start)
        assert [r.id for r in data.source_window(700, 100, order=order).rows] == ids[700:]
    flt = data.parse_filter("sources", "J0001 det>=2")
    got = data.source_window(0, 1000, flt, order="eta")
    assert got.total == len(got.rows) > 0
    assert all("J0001" in (r.name or "") and r.n_detections >= 2 for r in got.rows)


def test_filters_parse_and_refuse_what_they_cannot_read(settings: Settings) -> None:
    f = DataFilter.parse("images", "fail none 6h 2026-11-29T0", FIXED_NOW)
    assert f.qa == ("fail", "none") and f.since == FIXED_NOW - timedelta(hours=6) and f.text == "2026-11-29T0"
    f = DataFilter.parse("sources", "J0834 det>=3 eta>=2.5 flux>=10", FIXED_NOW)
    assert (f.text, f.min_detections, f.min_eta, f.min_flux_jy) == ("J0834", 3, 2.5, 0.01)
    for view, text in (("images", "qa=bad"), ("images", "det>=3"), ("sources", "eta>2"), ("ms", "size=1")):
        with pytest.raises(DataFilterError):
            DataFilter.parse(view, text, FIXED_NOW)


# ---- the three views ---------------------------------------------------------------------
async def test_images_view_lists_qa_noise_peak_dr_and_beam(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        got = rows(app)
        assert got[0] == ("2026-11-29T11:00:00", "good", "1.21", "3.104", "2565", "50.2×33.9", "11-29 11:20")
        assert [r[0] for r in got[:3]] == ["2026-11-29T11:00:00", "2026-11-29T10:00:00", "2026-11-29T09:00:00"]
        assert len(got) == 8 and app.screen.table().cursor_row().style == ""
        assert app.screen.table()._row(2).style == "error"  # the failed image stands out
        info = str(app.screen.query_one("#info-images").render())
        assert info.startswith("8 images, newest first")


async def test_ms_view_and_its_detail(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot, "m")
        got = rows(app)
        assert got[0] == ("2026-11-29T11:00:00", "162864", "768", "117", "6.1%", "good", "11.5 GB",
                          "2026-11-29T11:00:00.ms")
        assert [r[5] for r in got] == ["good", "warn", "fail"]
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, MsDetailScreen)
        body = "\n".join(" ".join("".join(seg.text for seg in line).split()) for line in app.console.render_lines(
            app.screen.query_one("#body").content, app.console.options.update_width(120), pad=False))
        assert "Shape 162,864 rows, 768 channels, 117 antennas, 12.88 s integrations" in body
        assert "Flagged 18.3%" in body and "Calibration cal_0834" in body
        assert "Images (1) 2026-11-29T10:00:00-image.fits (warn)" in body
        assert "Path ms/2026-11-29T10:00:00.ms (not on disk)" in body  # the seeded MS directory does not exist


async def test_sources_view_sorts_by_variability_and_filters(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    new, var, steady = "DSA J080000.0+550000", "DSA J083412.3+553412", "DSA J084501.0+560002"
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot, "s")
        got = rows(app)
        assert [r[0] for r in got] == [new, var, steady]  # by name, i.e. by RA
        with db.session() as s:
            src = s.get_one(m.Source, "src-var")
            assert got[1] == (var, "128.5513", "+55.5700", "6/8", f"{src.mean_flux_jy * 1e3:.2f}",
                              f"{src.eta:.2f}", f"{src.v:.3f}")
        assert got[0][5:] == ("", "")  # one epoch: no variability metric, not a zero

        async def order(steps: int) -> list[str]:
            await pilot.press("o")
            await settle(pilot)
            assert isinstance(app.screen, ChoiceScreen)
            await pilot.press("home", *["down"] * steps, "enter")
            await settle(pilot)
            return [r[0] for r in rows(app)]

        assert await order(1) == [var, steady, new]  # η: the variable one leads, the one without η is last
        assert app.screen.source_order == "eta"
        assert "most variable (η) first" in str(app.screen.query_one("#info-sources").render())
        assert await order(2) == [steady, var, new]  # mean flux
        assert await order(3) == [steady, var, new]  # detections: 8, 6, 1

        await pilot.press("slash", *"det>=2 flux>=30", "enter")
        await settle(pilot)
        assert [r[0] for r in rows(app)] == [steady]
        await pilot.press("slash", "ctrl+u", *"eta>2")
        await pilot.pause()
        assert "unknown filter term 'eta>2'" in str(app.screen.query_one("#problem").render())
        await pilot.press("ctrl+u", *"J0999", "enter")
        await settle(pilot)
        empty = app.screen.query_one("#empty-sources")
        assert empty.display and "No sources match the filter “J0999”" in str(empty.render())
        assert not app.screen.table().display


async def test_images_filter_by_qa_and_order_only_for_sources(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        await pilot.press("o")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceScreen)  # sorting is the sources' alone
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        help_rows = {r[2]: r for r in app.screen.rows}
        assert help_rows["data.order"][3].startswith("only the sources")
        assert {"data.ms", "data.images", "data.sources", "data.detail", "data.filter"} <= help_rows.keys()
        await pilot.press("escape")
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"fail warn", "enter")
        await settle(pilot)
        assert [r[:2] for r in rows(app)] == [("2026-11-29T10:00:00", "warn"), ("2026-11-29T09:00:00", "fail")]
        await pilot.press("m")  # each view keeps its own filter
        await settle(pilot)
        assert len(rows(app)) == 3
        await pilot.press("i")
        await settle(pilot)
        assert len(rows(app)) == 2 and "filter: fail warn" in str(app.screen.query_one("#info-images").render())


async def test_hundred_thousand_sources_page_by_keyset(db: Database) -> None:
    n = 100_000
    with db.session() as s:
        s.execute(insert(m.Source), [
            {"id": f"s{i:06d}", "name": f"DSA J{i:06d}", "ra_deg": i * 0.0036, "dec_deg": 50.0,
             "n_detections": i % 30, "n_images": 30, "mean_flux_jy": 1e-3 * (i % 997), "eta": (i % 101) / 10,
             "v": 0.1} for i in range(n)])
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot, "s")
        table = app.screen.table()
        assert isinstance(table, PagedTable) and table.total == n
        assert table.cursor_row().key == "s000000" and len(table._rows) <= 300
        await pilot.press("pagedown")
        await settle(pilot)
        assert table.cursor_row().key == f"s{table.body_height:06d}"
        await pilot.press("end")
        await settle(pilot)
        assert table.cursor_row().key == f"s{n - 1:06d}" and not table.pending
        await pilot.press("up")
        await settle(pilot)
        assert table.cursor_row().key == f"s{n - 2:06d}"
        assert len(table._rows) <= 300
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SourceDetailScreen) and app.screen.detail.name == f"DSA J{n - 2:06d}"


# ---- image detail and its preview -------------------------------------------------------------
def test_thumbnail_fits_the_widget_and_keeps_the_aspect() -> None:
    assert fit(64, 64, 40, 20) == (40, 40)      # square: 40 cells × 20 rows of half blocks
    assert fit(512, 256, 40, 20) == (40, 20)    # wide: limited by the width
    assert fit(100, 400, 40, 20) == (10, 40)    # tall: limited by the height
    assert fit(10, 10, 40, 20) == (40, 40)      # small images are enlarged to the space
    assert fit(0, 10, 40, 20) == (0, 0)


async def test_image_detail_draws_the_png_with_half_blocks(db: Database, settings: Settings) -> None:
    paths = seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ImageDetailScreen)
        thumb = screen.query_one(Thumbnail)
        source = np.asarray(PILImage.open(paths["png"]))
        assert np.array_equal(thumb.pixels, source)
        w, h = thumb.drawn_px
        assert w == h and w <= thumb.size.width and h <= 2 * thumb.size.height
        # the brightest source (row 20, col 40 of 64) is drawn where it is: find the brightest half block
        rows_drawn = (h + 1) // 2
        top, left = (thumb.size.height - rows_drawn) // 2, (thumb.size.width - w) // 2
        best, where = -1, (0, 0)
        for y in range(top, top + rows_drawn):
            x = 0
            for seg in thumb.render_line(y):
                for _ in seg.text:
                    if seg.text[0] == UPPER_HALF:
                        for half, colour in ((0, seg.style.color), (1, seg.style.bgcolor)):
                            level = colour.get_truecolor().red if colour else -1
                            if level > best:
                                best, where = level, (2 * (y - top) + half, x - left)
                    x += 1
        assert best >= 240
        assert abs(where[0] - 20 * h / 64) <= 2 and abs(where[1] - 40 * w / 64) <= 2
        caption = str(screen.query_one("#caption").render())
        assert caption == "PNG preview, 64×64 px"
        metrics = screen.query_one("#metrics").content
        lines = [" ".join(seg.text for seg in line).split() for line in
                 app.console.render_lines(metrics, app.console.options.update_width(120), pad=False)]
        flat = [" ".join(w) for w in lines]
        assert "RMS 1.210 mJy/beam" in flat and "Beam 50.2″ × 33.9″, PA -12.5°" in flat
        assert "Sources 3 detected, 0 forced" in flat and "FITS images/2026-11-29T11:00:00-image.fits" in flat
        assert str(screen.query_one("#grade").render()) == "QA good: noise 1.1× thermal"


async def test_image_detail_renders_the_fits_when_there_is_no_png(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        thumb = app.screen.query_one(Thumbnail)
        assert thumb.pixels is not None and thumb.pixels.shape == (48, 48)
        # north up: the FITS source at the top-left of the sky (stored at the bottom rows) is drawn top-left
        r, c = np.unravel_index(np.argmax(thumb.pixels), thumb.pixels.shape)
        assert abs(r - 8) <= 1 and abs(c - 8) <= 1
        assert str(app.screen.query_one("#caption").render()) == "rendered from the FITS (no PNG), 48×48 px"


async def test_image_detail_says_why_there_is_no_preview(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        await pilot.press("end", "enter")
        await settle(pilot)
        thumb = app.screen.query_one(Thumbnail)
        assert thumb.pixels is None
        assert thumb.message == ("no preview: no PNG recorded; FITS /archive/2026-11-24T11:00:00-image.fits "
                                 "not on disk")
        text = "".join(seg.text for y in range(thumb.size.height) for seg in thumb.render_line(y))
        assert "no preview: no PNG recorded" in text


def test_fits_preview_of_a_large_image_with_blanked_pixels(db: Database, settings: Settings, tmp_path) -> None:
    """A 2048² FITS with a NaN border is reduced to the PNG's 512 px by max-pooling: the source survives."""
    plane = np.zeros((2048, 2048))
    plane[:300] = np.nan
    plane[1500, 700] = 5.0  # one bright pixel (a point source)
    write_fits(tmp_path / "big-image.fits", plane)
    with db.session() as s:
        s.add(m.Image(id="big", path=str(tmp_path / "big-image.fits"), created_at=FIXED_NOW))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the all-NaN blocks must not warn
        preview = Services(db, settings).data.image_preview("big")
    assert preview.origin == "fits" and preview.pixels.shape == (512, 512)
    r, c = np.unravel_index(np.argmax(preview.pixels), preview.pixels.shape)
    assert (r, c) == ((2047 - 1500) // 4, 700 // 4)  # north up: FITS row 0 is the bottom
    assert preview.pixels[r, c] == 255


async def test_details_of_removed_products_say_so(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with db.session() as s:
        s.add(m.Source(id="src-bare", name="DSA J070000.0+500000", ra_deg=105.0, dec_deg=50.0))
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(ImageDetailScreen("gone"))
        await settle(pilot)
        assert "no longer registered" in str(app.screen.query_one("#title").render())
        assert app.screen.query_one(Thumbnail).message == "no preview: no image gone (deleted?)"
        app.pop_screen()
        app.push_screen(SourceDetailScreen("src-bare"))
        await settle(pilot)
        assert str(app.screen.query_one("#facts").render()).startswith("0 detections in 0 images (0 forced) · "
                                                                      "never detected")
        assert "no flux measurements yet" in app.screen.query_one("#plot").render().plain
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, SourceDetailScreen)  # no image to open: a warning, not a crash
        app.pop_screen()
        app.push_screen(MsDetailScreen("/nowhere.ms"))
        await settle(pilot)
        assert "no longer registered" in str(app.screen.query_one("#title").render())


async def test_operator_grades_an_image_and_the_database_keeps_it(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen) and "now good" in app.screen.question
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("enter")  # a grade needs its reason
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"RFI stripes across the south", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ImageDetailScreen)
        with db.session() as s:
            img = s.get_one(m.Image, "img-1")
            assert img.qa_grade == "fail"
            assert img.qa_summary.startswith("noise 1.1× thermal; rated: console")
            assert img.qa_summary.endswith(": fail, RFI stripes across the south")
        grade = app.screen.query_one("#grade")  # the detail re-read the grade
        assert str(grade.render()).startswith("QA fail: noise 1.1× thermal; rated: console") and grade.has_class("fail")
        await pilot.press("escape")
        await settle(pilot)
        assert rows(app)[0][1] == "fail" and app.screen.table()._row(0).style == "error"


async def test_read_only_console_cannot_grade_images(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, ImageDetailScreen)
        assert "read-only" in (app.screen.disabled_reason("rate") or "")
        with db.session() as s:
            assert s.get_one(m.Image, "img-1").qa_grade == "good"


# ---- source detail and its light curve ---------------------------------------------------------
async def test_source_detail_shows_position_counts_and_light_curve(db: Database, settings: Settings) -> None:
    seed(db, settings)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot, "s")
        await pilot.press("down", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SourceDetailScreen)
        title = str(screen.query_one("#title").render())
        assert "DSA J083412.3+553412" in title and "08h34m12.3s +55d34m12s" in title
        facts = str(screen.query_one("#facts").render())
        assert facts.startswith("6 detections in 8 images (2 forced)")
        d = screen.detail
        assert [p.forced for p in d.light_curve] == [False] * 4 + [True] * 2 + [False] * 2
        assert [round(p.flux_jy * 1e3, 1) for p in d.light_curve] == [12.0, 14.5, 21.0, 9.0, 3.1, 2.4, 11.0, 18.0]
        drawn = screen.query_one("#plot").render().plain
        assert drawn.count("●") == 6 and drawn.count("○") == 2 and "MJD − 61368" in drawn
        legend = str(screen.query_one("#legend").render())
        assert legend.startswith("● detected (6)  ○ forced (2) · bars ±1σ")
        # the table, newest first; enter opens that image
        await pilot.press("t")
        await pilot.pause()
        table = screen.query_one("#points")
        assert table.row_count == 8 and table.get_row_at(0)[:4] == ["61373.45833", "18.000", "1.200", "detected"]
        assert table.get_row_at(2)[3] == "forced"
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ImageDetailScreen) and app.screen.image_id == "img-3"
        await pilot.press("escape")
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, ImageDetailScreen) and app.screen.image_id == "img-1"


async def test_single_epoch_source_and_job_logs_from_the_details(db: Database, settings: Settings) -> None:
    from engine.processing.queue import JobQueue
    from screens.job_log import JobLogScreen

    seed(db, settings)
    queue = JobQueue(db)
    job_id = queue.enqueue("image", group_id="2026-11-29T11:00:00")
    with db.session() as s:
        s.add(m.JobLog(job_id=job_id, message="CLEAN: 1000/1000 iterations"))
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_data(pilot, "s")
        await pilot.press("enter")  # the first by name has one detection
        await settle(pilot)
        drawn = app.screen.query_one("#plot").render().plain
        assert drawn.count("●") == 1 and "○" not in drawn
        assert str(app.screen.query_one("#legend").render()).startswith("● detected (1) · bars")
        await pilot.press("i", "l")  # its image, then that image's group's job log
        await settle(pilot)
        assert isinstance(app.screen, JobLogScreen) and app.screen.job.id == job_id
        await pilot.press("escape", "escape", "escape", "m", "enter")
        await settle(pilot)
        assert isinstance(app.screen, MsDetailScreen)
        await pilot.press("l")
        await settle(pilot)
        assert isinstance(app.screen, JobLogScreen) and app.screen.job.group_id == "2026-11-29T11:00:00"


# ---- snapshots (80×24, fixed clock, seeded) ------------------------------------------------------
def test_snapshot_images_view(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    seed(db, settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_data(pilot)

    assert snap_compare(make_app(db, settings=settings), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_image_detail_with_thumbnail(snap_compare, db: Database,  # type: ignore[no-untyped-def]
                                              settings: Settings) -> None:
    seed(db, settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_data(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(db, settings=settings), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_source_detail_with_light_curve(snap_compare, db: Database,  # type: ignore[no-untyped-def]
                                                 settings: Settings) -> None:
    seed(db, settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_data(pilot, "s")
        await pilot.press("down", "enter")
        await settle(pilot)

    assert snap_compare(make_app(db, settings=settings), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_sources_view(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    seed(db, settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_data(pilot, "s")

    assert snap_compare(make_app(db, settings=settings), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_ms_view(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    seed(db, settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_data(pilot, "m")

    assert snap_compare(make_app(db, settings=settings), terminal_size=(80, 24), run_before=run_before)
