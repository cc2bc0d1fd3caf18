"""Every ``sh`` block of docs/runbook.md runs, in order, against a temporary data dir and succeeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

RUNBOOK = REPO / "docs" / "runbook.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", RUNBOOK.read_text(), flags=re.S | re.M)


def test_runbook_sh_blocks_run_against_a_temp_data_dir(tmp_path: Path) -> None:
    sh = blocks("sh")
    assert len(sh) >= 5 and any("contimg --version" in b for b in sh)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "contimg"  # the command the runbook types: this checkout's contimg
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m contimg_console.cli \"$@\"\n")
    shim.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "CONTIMG_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    for i, block in enumerate(sh, 1):
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, f"runbook sh block {i} failed:\n{block}\n{out.stdout}\n{out.stderr}"
    assert (tmp_path / "data" / "pipeline.sqlite3").exists()


def test_console_blocks_use_the_installed_binary_and_the_shipped_unit() -> None:
    text = "\n".join(blocks("console"))
    assert "/opt/contimg/bin/contimg" in text and "contimg.service" in text
    unit = (REPO / "packaging" / "contimg.service").read_text()
    assert "ExecStart=/opt/contimg/bin/contimg serve" in unit
