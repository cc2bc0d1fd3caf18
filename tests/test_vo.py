"""IVOA services against a running server: Simple Cone Search 1.03 and TAP sync, with pyvo as the client
and astropy's strict VOTable parser; bad input answers the standard's error VOTable."""

from __future__ import annotations

import asyncio
import io
import warnings

import pytest
import pyvo
from astropy.io.votable import parse
from pyvo.dal.exceptions import DALOverflowWarning, DALQueryError

from engine.db import models as m
from engine.vo import tap
from engine.vo.votable import VOError
from http_helpers import call

CENTRE = (150.0, 55.0)


def _seed(db) -> None:
    with db.session() as s:
        img = m.Image(id="img1", path="/data/images/secret.fits", mid_mjd=61000.5, pointing_ra_deg=150.0,
                      pointing_dec_deg=55.0, noise_jy=1e-3, peak_flux_jy=2.0, qa_grade="A")
        s.add(img)
        for i in range(40):  # a line of sources moving away from the centre by 0.05 deg steps in dec
            s.add(m.Source(id=f"src{i:02d}", name=f"DSA J{i:02d}", ra_deg=CENTRE[0], dec_deg=CENTRE[1] + 0.05 * i,
                           n_detections=i, peak_flux_jy=0.01 * (i + 1), mean_flux_jy=0.01 * i if i else None))
        s.add(m.Source(id="far", name="far", ra_deg=10.0, dec_deg=-5.0, n_detections=1))
        s.add(m.Source(id="wrap", name="wrap", ra_deg=359.99, dec_deg=55.0, n_detections=1))
        s.flush()
        for i in range(5):
            s.add(m.Photometry(source_id=f"src{i:02d}", image_id="img1", mjd=61000.5, flux_jy=0.01 * (i + 1),
                               flux_err_jy=1e-3, snr=10.0 + i, forced=bool(i % 2)))


def _strict(body: str):
    return parse(io.BytesIO(body.encode()), verify="exception")


async def test_scs_with_pyvo_and_strict_votable(runtime):
    _seed(runtime.db)
    url = runtime.api_url + "/api/v1/vo/scs"
    res = await asyncio.to_thread(lambda: pyvo.dal.SCSService(url).search(pos=CENTRE, radius=0.26))
    ids = [str(r) for r in res["id"]]
    assert ids == [f"src{i:02d}" for i in range(6)]               # 0, 0.05 … 0.25 deg; sorted by distance
    assert list(res.getcolumn("_r")) == pytest.approx([0.05 * i for i in range(6)], abs=1e-9)
    assert res.fieldname_with_ucd("POS_EQ_RA_MAIN") == "ra_deg"
    assert res.fieldname_with_ucd("ID_MAIN") == "id"
    rec = res[1]
    assert rec.pos.ra.deg == pytest.approx(150.0) and rec.id == "src01"

    status, body = await call(runtime, "GET", "/api/v1/vo/scs?RA=150&DEC=55&SR=0.11&VERB=1")
    assert status == 200
    vot = _strict(body)
    fields = vot.get_first_table().fields
    assert [f.name for f in fields] == ["id", "ra_deg", "dec_deg", "_r"]
    assert [f.ucd for f in fields[:3]] == ["ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"]
    assert len(vot.get_first_table().array) == 3
    # VERB=3 carries the variability columns; a cone across RA 0 finds the source at 359.99
    status, body = await call(runtime, "GET", "/api/v1/vo/scs?ra=0.01&dec=55&sr=0.1&verb=3")
    t = _strict(body).get_first_table()
    assert [str(x) for x in t.array["id"]] == ["wrap"] and "eta" in [f.name for f in t.fields]
    status, body = await call(runtime, "GET", "/api/v1/vo/scs?RA=150&DEC=-80&SR=1")
    assert len(_strict(body).get_first_table().array) == 0


@pytest.mark.parametrize("query, message", [
    ("DEC=55&SR=1", "RA is required"), ("RA=abc&DEC=55&SR=1", "RA must be a number"),
    ("RA=400&DEC=55&SR=1", "RA must be in [0, 360]"), ("RA=1&DEC=95&SR=1", "DEC must be in [-90, 90]"),
    ("RA=1&DEC=5&SR=-1", "SR must be in"), ("RA=1&DEC=5&SR=45", "SR must be in"),
    ("RA=1&DEC=5&SR=nan", "SR must be finite"), ("RA=1&DEC=5&SR=1&VERB=7", "VERB must be 1, 2 or 3")])
async def test_scs_errors_are_error_votables(runtime, query, message):
    status, body = await call(runtime, "GET", "/api/v1/vo/scs?" + query)
    assert status == 200
    vot = _strict(body)
    err = [i for i in vot.infos if i.name == "Error"]
    assert err and message in err[0].value
    assert vot.resources[0].infos[0].value == "ERROR"
    with pytest.raises(DALQueryError, match=message.split(" ")[0]):
        await asyncio.to_thread(lambda: pyvo.dal.scs.SCSQuery(runtime.api_url + "/api/v1/vo/scs",
                                                              **dict(p.split("=") for p in query.split("&"))
                                                              ).execute())


async def test_tap_with_pyvo(runtime):
    _seed(runtime.db)
    svc = pyvo.dal.TAPService(runtime.api_url + "/api/v1/vo/tap")
    res = await asyncio.to_thread(svc.run_sync, "SELECT TOP 5 id, ra_deg, dec_deg, "
                                  "DISTANCE(POINT('ICRS', ra_deg, dec_deg), POINT('ICRS', 150, 55)) AS dist "
                                  "FROM sources WHERE 1=CONTAINS(POINT('ICRS', ra_deg, dec_deg), "
                                  "CIRCLE('ICRS', 150.0, 55.0, 1.0)) ORDER BY dist")
    assert [str(x) for x in res["id"]] == [f"src{i:02d}" for i in range(5)]
    assert list(res["dist"]) == pytest.approx([0.05 * i for i in range(5)], abs=1e-9)
    t = res.to_table()
    assert t["ra_deg"].unit == "deg" and t["ra_deg"].meta.get("ucd", res.fieldname_with_ucd("pos.eq.ra;meta.main"))
    # joins across the published tables; SELECT * on images does not show the file path
    res = await asyncio.to_thread(svc.run_sync, "SELECT s.name, p.flux_jy, p.forced, i.qa_grade FROM photometry AS p "
                                  "JOIN sources AS s ON s.id = p.source_id JOIN images AS i ON i.id = p.image_id "
                                  "WHERE p.snr > 11 ORDER BY p.flux_jy DESC")
    assert [str(x) for x in res["name"]] == ["DSA J04", "DSA J03", "DSA J02"]
    res = await asyncio.to_thread(svc.run_sync, "SELECT * FROM images")
    assert "path" not in res.fieldnames and "qa_grade" in res.fieldnames
    # MAXREC caps the rows and says so (pyvo stays quiet when it got exactly the maxrec it asked for)
    res = await asyncio.to_thread(svc.run_sync, "SELECT id FROM sources", maxrec=7)
    assert len(res) == 7 and res.status[0] == "OVERFLOW"
    res = await asyncio.to_thread(svc.run_sync, "SELECT id FROM sources", maxrec=100)
    assert len(res) == 42 and res.status[0] == "OK"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await asyncio.to_thread(svc.run_sync, "SELECT TOP 3 id FROM sources")
    assert not any(issubclass(w.category, DALOverflowWarning) for w in caught)
    # VOSI
    tables = await asyncio.to_thread(lambda: svc.tables)
    assert {"sources", "photometry", "images"} <= set(tables.keys())
    assert "ra_deg" in [c.name for c in tables["sources"].columns]
    assert await asyncio.to_thread(lambda: svc.available)
    assert await asyncio.to_thread(lambda: svc.hardlimit) == tap.HARD_MAXREC


@pytest.mark.parametrize("adql, message", [
    ("DELETE FROM sources", "must be a SELECT"),
    ("SELECT * FROM users", "'users' is not published"),
    ("SELECT * FROM main.sources", "unqualified"),
    ("SELECT * FROM sqlite_master", "not published"),
    ("SELECT id FROM sources; DROP TABLE sources", "one SELECT"),
    ("SELECT path FROM images", "no such column"),
    ("SELECT * FROM sources WHERE 1=CONTAINS(POINT('ICRS', ra_deg, dec_deg), BOX('ICRS', 1, 2, 3, 4))",
     "POINT and a CIRCLE"),
    ("SELECT * FROM sources WHERE 1=CONTAINS(POINT('GALACTIC', ra_deg, dec_deg), CIRCLE('ICRS', 1, 2, 3))",
     "coordinate system"),
    ("SELECT FROM WHERE", "ADQL"),
])
async def test_tap_rejects_with_error_votable(runtime, adql, message):
    _seed(runtime.db)
    svc = pyvo.dal.TAPService(runtime.api_url + "/api/v1/vo/tap")
    with pytest.raises(DALQueryError, match=message):
        await asyncio.to_thread(svc.run_sync, adql)


async def test_tap_bad_parameters(runtime):
    for form, message in (({"QUERY": "SELECT 1"}, "LANG is required"),
                          ({"LANG": "PQL", "QUERY": "SELECT 1"}, "LANG 'PQL'"),
                          ({"LANG": "ADQL", "QUERY": "SELECT id FROM sources", "MAXREC": "lots"}, "MAXREC"),
                          ({"LANG": "ADQL", "QUERY": "SELECT id FROM sources", "RESPONSEFORMAT": "csv"},
                           "RESPONSEFORMAT"),
                          ({"LANG": "ADQL", "QUERY": "  "}, "QUERY is empty")):
        status, body = await call(runtime, "POST", "/api/v1/vo/tap/sync", data=form)
        assert status == 200
        info = _strict(body).resources[0].infos[0]
        assert info.value == "ERROR" and message in info.content


def test_statement_timeout_aborts_a_runaway_query(db):
    _seed(db)
    heavy = ("SELECT count(*) FROM sources a, sources b, sources c, sources d, sources e "
             "WHERE a.ra_deg + b.ra_deg + c.ra_deg + d.ra_deg + e.ra_deg > 0")
    with pytest.raises(VOError, match="statement timeout of 0.2 s"):
        tap.execute(db.path, heavy, timeout_s=0.2)


def test_authorizer_is_the_last_line(db):
    # Even SQL that never went through the ADQL checks cannot read beyond the published columns.
    _seed(db)
    conn = tap._connect(db.path)
    try:
        with pytest.raises(Exception, match="not authorized|prohibited"):
            conn.execute("SELECT path FROM main.images").fetchall()
        with pytest.raises(Exception):
            conn.execute("DELETE FROM sources")
        assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 42
    finally:
        conn.close()


async def test_dashboard_tap_query_uses_the_service(runtime):
    _seed(runtime.db)
    status, out = await call(runtime, "POST", "/api/v1/vo/tap/query",
                             json={"query": "SELECT TOP 3 id FROM sources ORDER BY id"})
    assert status == 200 and out["status"] == "completed" and out["result_count"] == 3
    status, again = await call(runtime, "GET", f"/api/v1/vo/tap/query/{out['query_id']}")
    assert again == out
    status, body = await call(runtime, "GET", out["result_url"])
    assert [str(x) for x in _strict(body).get_first_table().array["id"]] == ["far", "src00", "src01"]
    status, bad = await call(runtime, "POST", "/api/v1/vo/tap/query", json={"query": "DROP TABLE sources"})
    assert status == 200 and bad["status"] == "error" and "SELECT" in bad["error_message"]
    status, _ = await call(runtime, "GET", "/api/v1/vo/tap/query/../../etc")
    assert status == 404
    status, _ = await call(runtime, "GET", "/api/v1/vo/tap/query/" + "0" * 32)
    assert status == 404
