"""Ingest of incoming/: stability, grouping, idempotence, incomplete groups and bad files."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import make_settings
from engine.db import Database
from engine.db import models as m
from engine.ingest import Ingestor
from engine.simulator import simulate

T0 = datetime(2026, 11, 29, 8, 0, 0)


@pytest.fixture(scope="module")
def sim_group(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sim")
    (group,) = simulate(out, groups=1, preset="tiny", start=T0, seed=1)
    return sorted(group.files)


def _setup(tmp_path: Path, **ingest: object) -> tuple[object, Database, Ingestor]:
    settings = make_settings(tmp_path, ingest={"stable_s": 0, "incomplete_wait_s": 600, **ingest})
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    return settings, db, Ingestor(settings, db)


def _drop(files: list[Path], incoming: Path) -> list[Path]:
    out = []
    for f in files:
        shutil.copy(f, incoming / f.name)
        out.append(incoming / f.name)
    return out


def test_complete_group_is_ready_at_once_and_ingest_is_idempotent(tmp_path: Path, sim_group: list[Path]) -> None:
    settings, db, ing = _setup(tmp_path)
    _drop(sim_group, settings.incoming_dir)
    report = ing.poll()
    assert report.ready == ["2026-11-29T08:00:00"]
    assert [r.status for r in report.files] == ["grouped"] * 16
    with db.session() as s:
        g = s.get_one(m.ObservationGroup, "2026-11-29T08:00:00")
        assert (g.ingest_status, g.state, g.n_subbands, g.missing_subbands) == ("ready", "pending", 16, [])
        assert g.dec_deg == pytest.approx(54.57, abs=1e-6)
    # a restart (new ingestor, same files) records nothing twice
    again = Ingestor(settings, db).poll()
    assert again.files == [] and again.ready == []
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(m.Hdf5File)) == 16
        assert s.scalar(select(func.count()).select_from(m.ObservationGroup)) == 1


def test_half_written_files_wait_for_stability(tmp_path: Path, sim_group: list[Path]) -> None:
    settings, db, ing = _setup(tmp_path, stable_s=10)
    _drop(sim_group, settings.incoming_dir)
    now = datetime.now(UTC)
    first = ing.poll(now)
    assert first.files == [] and first.waiting_for_stability == 16
    later = ing.poll(now + timedelta(seconds=11))
    assert len(later.files) == 16 and later.ready


def test_incomplete_group_proceeds_with_missing_subbands_recorded(tmp_path: Path, sim_group: list[Path]) -> None:
    settings, db, ing = _setup(tmp_path, min_subbands=12)
    _drop(sim_group[:14], settings.incoming_dir)
    now = datetime.now(UTC)
    assert ing.poll(now).ready == []
    report = ing.poll(now + timedelta(seconds=601))
    assert report.ready == ["2026-11-29T08:00:00"]
    with db.session() as s:
        g = s.get_one(m.ObservationGroup, "2026-11-29T08:00:00")
        assert g.missing_subbands == [14, 15] and "sb14, sb15" in g.warnings[0]


def test_too_few_subbands_marks_group_incomplete(tmp_path: Path, sim_group: list[Path]) -> None:
    settings, db, ing = _setup(tmp_path, min_subbands=12)
    _drop(sim_group[:5], settings.incoming_dir)
    now = datetime.now(UTC)
    ing.poll(now)
    report = ing.poll(now + timedelta(seconds=601))
    assert report.incomplete == ["2026-11-29T08:00:00"]
    with db.session() as s:
        g = s.get_one(m.ObservationGroup, "2026-11-29T08:00:00")
        assert g.state == "failed" and g.ingest_status == "incomplete"
        assert "5 of 16 subbands" in g.error and "sb05" in g.error


def test_bad_files_are_recorded_never_deleted(tmp_path: Path, sim_group: list[Path]) -> None:
    settings, db, ing = _setup(tmp_path)
    inc = settings.incoming_dir
    _drop(sim_group[1:], inc)
    (inc / "2026-11-29T08:00:00_sb00.hdf5").write_text("this is not HDF5")  # non-UVH5 content
    (inc / "notes.txt").write_text("operator notes")  # stray
    (inc / "2026-11-29T08-00-00_sb01.hdf5").write_bytes(b"")  # wrong file name
    shutil.copy(sim_group[2], inc / "2026-11-29T08:00:02_sb02.hdf5")  # duplicate subband (jittered name)
    truncated = inc / "2026-11-29T08:00:01_sb07.hdf5"
    data = sim_group[7].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    report = ing.poll()
    by_name = {Path(r.path).name: r for r in report.files}
    assert by_name["2026-11-29T08:00:00_sb00.hdf5"].status == "invalid"
    assert "not an HDF5 file" in by_name["2026-11-29T08:00:00_sb00.hdf5"].error
    assert by_name["notes.txt"].status == "stray"
    assert by_name["2026-11-29T08-00-00_sb01.hdf5"].status == "stray"
    dup = by_name["2026-11-29T08:00:02_sb02.hdf5"]
    assert dup.status == "duplicate" and "duplicate of sb02" in dup.error
    assert by_name["2026-11-29T08:00:01_sb07.hdf5"].status in ("duplicate", "invalid")
    for name in by_name:
        assert (inc / name).exists()  # never deleted
    with db.session() as s:
        rows = {r.filename: r for r in s.scalars(select(m.Hdf5File))}
        assert rows["notes.txt"].error and rows["2026-11-29T08:00:00_sb00.hdf5"].error


def test_timestamp_jitter_still_groups(tmp_path: Path, sim_group: list[Path]) -> None:
    settings, db, ing = _setup(tmp_path)
    inc = settings.incoming_dir
    for f in sim_group:
        sb = f.name.split("_sb")[1]
        jitter = int(sb[:2]) % 4  # 0–3 s late
        shutil.copy(f, inc / f"2026-11-29T08:00:0{jitter}_sb{sb}")
    report = ing.poll()
    assert report.ready == ["2026-11-29T08:00:00"]


def test_cli_ingest_registers_by_hand(tmp_path: Path, sim_group: list[Path]) -> None:
    import subprocess

    from conftest import contimg_cmd

    data = tmp_path / "d"
    proc = subprocess.run(contimg_cmd("--data-dir", str(data), "ingest", *map(str, sim_group)), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "16 grouped" in proc.stdout and "2026-11-29T08:00:00 ready" in proc.stdout
    again = subprocess.run(contimg_cmd("--data-dir", str(data), "ingest", *map(str, sim_group)), capture_output=True,
                           text=True, timeout=120)
    assert "16 already known" in again.stdout
