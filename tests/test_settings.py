"""Settings layering and the one-line errors of bad configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import contimg_cmd, free_port
from engine.errors import ConfigError
from engine.settings import load_settings


def test_defaults_use_xdg_data_dir(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir.name == "contimg"
    assert s.db_path == s.data_dir / "pipeline.sqlite3"
    assert set(s.paths()) >= {"incoming", "ms", "caltables", "images", "exports", "backups", "notebooks", "logs"}
    assert s.api.host == "127.0.0.1" and s.api.port == 8000


def test_layers_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[api]\nport = 9000\nhost = "0.0.0.0"\n[engine]\nworkers = 3\n')
    s = load_settings(cfg)
    assert (s.api.port, s.api.host, s.engine.workers) == (9000, "0.0.0.0", 3)
    monkeypatch.setenv("CONTIMG_API__PORT", "9100")
    s = load_settings(cfg)
    assert s.api.port == 9100 and s.api.host == "0.0.0.0"  # env beats file, file keeps the rest
    s = load_settings(cfg, {"api": {"port": 9200}})
    assert s.api.port == 9200  # CLI beats env
    assert s.config_file == cfg


def test_xdg_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "contimg").mkdir(parents=True)
    (xdg / "contimg" / "config.toml").write_text("[tui]\nrefresh_s = 5.0\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert load_settings().tui.refresh_s == 5.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[api]\nprot = 1\n", "api.prot: unknown key"),
        ("[api]\nport = 'many'\n", "api.port: Input should be a valid integer"),
        ("[api\nport = 1\n", "invalid TOML"),
        ("colour = 'red'\n", "colour: unknown key"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert expected in str(err.value)
    assert str(cfg) in str(err.value)


def test_env_error_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTIMG_ENGINE__WORKERS", "lots")
    with pytest.raises(ConfigError, match="CONTIMG_ENGINE__WORKERS"):
        load_settings()


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(contimg_cmd(*args), capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("contimg:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_bad_config_file_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[engine]\nworkerz = 2\n")
    proc = _run("--config", str(cfg), "--data-dir", str(tmp_path / "d"), "config", "show")
    assert proc.returncode == 2
    assert "engine.workerz: unknown key" in _one_line_error(proc)


def test_cli_missing_config_file(tmp_path: Path) -> None:
    proc = _run("--config", str(tmp_path / "nope.toml"), "config", "show")
    assert proc.returncode == 2 and "does not exist" in _one_line_error(proc)


def test_cli_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run("--data-dir", str(blocker / "sub"), "db", "upgrade")
    assert proc.returncode == 2
    assert "not writable" in _one_line_error(proc)


def test_cli_port_in_use(tmp_path: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        proc = _run("--data-dir", str(tmp_path / "d"), "serve", "--port", str(port))
    assert proc.returncode == 1
    line = _one_line_error(proc)
    assert "address already in use" in line and str(port) in line


def test_config_show_prints_every_path(tmp_path: Path) -> None:
    proc = _run("--data-dir", str(tmp_path / "d"), "config", "show")
    assert proc.returncode == 0, proc.stderr
    for name in ("database", "incoming", "ms", "caltables", "images", "exports", "backups", "notebooks", "logs"):
        assert name in proc.stdout
    assert str(tmp_path / "d" / "pipeline.sqlite3") in proc.stdout
    assert "api.port = 8000" in proc.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "database.url: scheme postgresql:// is not supported: write postgresql+psycopg://"),
        ("mysql://u@h/db", "database.url: scheme mysql:// is not supported; the database is sqlite:// or "
                           "postgresql+psycopg://"),
        ("pipeline.sqlite3", "database.url: 'pipeline.sqlite3' is not a database URL"),
        ("sqlite:///relative.sqlite3", "a SQLite URL names a file: sqlite:////absolute/path.sqlite3"),
        ("postgresql+psycopg://u:pw@h:5432/", "names no database"),
    ],
)
def test_bad_database_url_names_the_problem(tmp_path: Path, url: str, expected: str) -> None:
    cfg = tmp_path / "db.toml"
    cfg.write_text(f"[database]\nurl = {url!r}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert expected in str(err.value) and str(cfg) in str(err.value)


def test_database_url_default_and_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(None, {"data_dir": tmp_path})
    assert s.database.url is None and s.database_is_sqlite
    assert s.database_url == f"sqlite:///{tmp_path / 'pipeline.sqlite3'}" and s.db_path == tmp_path / "pipeline.sqlite3"
    monkeypatch.setenv("CONTIMG_DATABASE__URL", "postgresql+psycopg://contimg:secret@db.example:5432/contimg")
    s = load_settings(None, {"data_dir": tmp_path})
    assert not s.database_is_sqlite and s.database_url.endswith("@db.example:5432/contimg")
    assert s.database_label == "postgresql+psycopg://contimg:***@db.example:5432/contimg"
    assert "database" not in s.paths()  # no file: nothing backs it up or swaps it as one
    monkeypatch.setenv("CONTIMG_DATABASE__URL", f"sqlite:///{tmp_path / 'other.sqlite3'}")
    assert load_settings(None, {"data_dir": tmp_path}).db_path == tmp_path / "other.sqlite3"


def test_config_show_hides_the_database_password(tmp_path: Path) -> None:
    env = {**os.environ, "CONTIMG_DATABASE__URL": "postgresql+psycopg://contimg:secret@db.example/contimg"}
    proc = subprocess.run(contimg_cmd("--data-dir", str(tmp_path / "d"), "config", "show"), capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "secret" not in proc.stdout and "contimg:***@db.example/contimg" in proc.stdout
