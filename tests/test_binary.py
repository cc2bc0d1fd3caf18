"""``make binary``'s one file: built with PyInstaller, it runs --version, status, serve and demo from
a temp dir with an empty environment (no virtualenv, no PYTHONPATH). Slow: the build takes minutes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pyinstaller = Path(REPO / ".venv" / "bin" / "pyinstaller")
    if not pyinstaller.exists():
        pytest.skip("pyinstaller is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(pyinstaller), "--noconfirm", "--distpath", str(out / "dist"), "--workpath", str(out / "work"),
                    str(REPO / "packaging" / "binary" / "contimg.spec")], check=True, capture_output=True, timeout=1500)
    return out / "dist" / "contimg"


def _run(binary: Path, cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], cwd=cwd, env={"HOME": str(cwd)}, capture_output=True, text=True,
                          timeout=120, **kw)


def test_binary_version_and_status_without_a_virtualenv(binary: Path, tmp_path: Path) -> None:
    out = _run(binary, tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.startswith("contimg ")
    out = _run(binary, tmp_path, "--data-dir", str(tmp_path / "d"), "status")
    assert out.returncode == 0 and "jobs by state" in out.stdout, out.stderr
    out = _run(binary, tmp_path, "--data-dir", str(tmp_path / "d"), "db", "current")
    assert "(head)" in out.stdout  # the migrations travelled inside the binary


def test_binary_serves_and_stops_on_sigterm(binary: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([str(binary), "--data-dir", str(tmp_path / "d"), "--port", str(port), "serve"],
                            cwd=tmp_path, env={"HOME": str(tmp_path)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    assert b"contimg_engine_running 1.0" in r.read()
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_binary_demo_opens_the_console(binary: Path, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(str(binary), ["--data-dir", str(tmp_path / "demo"), "--port", str(free_port()), "demo"],
                          cwd=str(tmp_path), env={"HOME": str(tmp_path), "TERM": "xterm-256color"},
                          dimensions=(40, 120), timeout=120)
    try:
        child.expect("Queue|Health|contimg", timeout=120)  # the TUI drew its first screen
        assert (tmp_path / "demo" / "pipeline.sqlite3").exists()
    finally:
        child.kill(signal.SIGTERM)
        child.close(force=True)
    assert shutil.which("true")  # the host tools are all the binary needed
