"""The per-stage commands an operator runs by hand: convert, calibrate, cal find, applycal, image, sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import contimg_cmd


def run(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(contimg_cmd(*args), capture_output=True, text=True, timeout=600)
    assert proc.returncode in ok, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.timeout(900)
def test_stage_commands_by_hand(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[imaging.params]\nfov_deg = 0.6\nniter = 300\n")  # a small field keeps the test quick
    data = str(tmp_path / "d")
    sim = tmp_path / "sim"
    out = run("--data-dir", data, "simulate", "--out", str(sim), "--preset", "tiny", "--groups", "1")
    assert "16 files" in out.stdout
    files = sorted(str(p) for p in sim.glob("*.hdf5"))
    ms = tmp_path / "cal.ms"
    out = run("--data-dir", data, "convert", *files, "--out", str(ms))
    assert "768 channels" in out.stdout and ms.is_dir()
    out = run("--data-dir", data, "calibrate", str(ms), "--register")
    assert "calibrator J0834+5534" in out.stdout and "QA passed" in out.stdout and "registered" in out.stdout
    mjd = None
    from casacore.tables import table

    with table(str(ms), ack=False) as t:
        mjd = float(t.getcol("TIME").mean()) / 86400
    out = run("--data-dir", data, "cal", "find", "--mjd", f"{mjd + 0.1:.5f}", "--dec", "54.57")
    assert "decision: use" in out.stdout and "J0834+5534" in out.stdout
    out = run("--data-dir", data, "cal", "find", "--mjd", f"{mjd + 5:.5f}", "--dec", "54.57", ok=(1,))
    assert "decision: fail" in out.stdout
    out = run("--data-dir", data, "applycal", str(ms))
    assert "applied" in out.stdout
    out = run("--config", str(cfg), "--data-dir", data, "image", str(ms), "--out", str(tmp_path / "img"), ok=(0, 1))
    assert "-image.fits" in out.stdout and "CORRECTED_DATA" in out.stdout
    fits = next((tmp_path / "img").glob("*-image.fits"))
    out = run("--data-dir", data, "sources", str(fits))
    assert "sources" in out.stdout.splitlines()[0]
    bad = subprocess.run(contimg_cmd("--data-dir", data, "calibrate", str(tmp_path / "nope.ms")),
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not a Measurement Set" in bad.stderr and "Traceback" not in bad.stderr
