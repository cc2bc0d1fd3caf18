"""The one settings class of contimg.

Layers, lowest first: built-in defaults < the TOML config file
(``$XDG_CONFIG_HOME/contimg/config.toml``) < ``CONTIMG_*`` environment variables
< command-line flags. Every error names the key and where it came from, so an
operator at the telescope can fix it without reading a traceback.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import ConfigError

_FILE_VALUES: ContextVar[dict[str, Any]] = ContextVar("contimg_file_values", default={})

DATA_SUBDIRS = ("incoming", "ms", "caltables", "images", "exports", "backups", "notebooks", "logs")


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def default_config_file() -> Path:
    return xdg_config_home() / "contimg" / "config.toml"


def default_data_dir() -> Path:
    return xdg_data_home() / "contimg"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ApiSettings(_Section):
    """The embedded REST server."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    enabled: bool = True
    anonymous_reads: Literal["loopback", "always", "never"] = "loopback"
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    dashboard_dir: Path | None = None
    access_token_ttl_s: int = Field(3600, ge=60)
    refresh_token_ttl_s: int = Field(7 * 86400, ge=300)
    # Whole-table listings (/jobs, /images, /sources, /queries) may lag the database by at
    # most this long while their rebuild runs; 0 makes every request wait for fresh data.
    listing_max_stale_s: float = Field(2.0, ge=0, le=60)
    # The Prometheus that scrapes /metrics; /api/v1/metrics/query forwards PromQL to it.
    prometheus_url: str | None = None
    # Login throttling: failed logins per user name and per client address within the window.
    login_failures_per_user: int = Field(5, ge=1, le=1000)
    login_failures_per_address: int = Field(20, ge=1, le=10000)
    login_window_s: float = Field(300.0, ge=1, le=86400)


class EngineSettings(_Section):
    """The processing engine and its job queue."""

    workers: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, le=256)
    poll_interval_s: float = Field(1.0, gt=0)
    lease_s: float = Field(120.0, ge=1)
    heartbeat_s: float = Field(20.0, gt=0)
    recover_interval_s: float = Field(30.0, gt=0)
    start_paused: bool = False
    max_attempts: int = Field(3, ge=1, le=50)
    # A job whose holder died (host crash, killed worker) is requeued without spending an attempt;
    # after this many interruptions while other jobs finished, it fails as the likely cause.
    max_interruptions: int = Field(5, ge=1, le=100)
    interrupt_backoff_s: float = Field(5.0, ge=0)
    retry_base_s: float = Field(30.0, ge=0)
    retry_max_s: float = Field(300.0, ge=0)
    stage_concurrency: dict[str, int] = Field(
        default_factory=lambda: {"convert": 2, "solve": 1, "calibrate": 1, "image": 1, "measure": 2}
    )
    shutdown_grace_s: float = Field(10.0, ge=0)
    # niceness of the stage worker processes: the console (TUI, REST) keeps priority over heavy stages
    worker_nice: int = Field(5, ge=0, le=19)
    # Where stages run: this host's process pool, or a dask.distributed cluster (the data dir
    # must then be shared storage every worker sees; checked at start).
    executor: Literal["local", "dask"] = "local"
    dask_scheduler: str | None = None  # e.g. "tcp://scheduler:8786"
    dask_connect_s: float = Field(10.0, gt=0)
    # Dotted path of a function returning the StageRegistry (site plug-ins, test pipelines).
    registry: str = "engine.processing.pipeline:default_registry"


DATABASE_SCHEMES = ("sqlite", "postgresql+psycopg")


class DatabaseSettings(_Section):
    """Where the pipeline's database lives.

    ``url`` None (the default): the SQLite file ``<data_dir>/pipeline.sqlite3``, one host.
    ``postgresql+psycopg://user:password@host:5432/contimg``: a PostgreSQL database that
    several hosts write (docs/scaling.md). ``sqlite:////abs/path.sqlite3`` names another file.
    """

    url: str | None = None
    # PostgreSQL only: connections each contimg process keeps open, and how many more it may
    # open under a burst (REST threads, the engine's DB threads). Every host's stage workers
    # open one more each while a job runs (their job logs).
    pool_size: int = Field(5, ge=1, le=100)
    max_overflow: int = Field(5, ge=0, le=100)
    connect_timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url", mode="after")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            return None
        return check_database_url(value)


def check_database_url(url: str) -> str:
    """The URL if contimg can open it; a ValueError naming what is wrong otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a database URL; use sqlite:////path/to/file.sqlite3 or "
                         "postgresql+psycopg://user:password@host:5432/dbname")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg", "postgresql+pg8000"):
        raise ValueError(f"scheme {scheme}:// is not supported: write postgresql+psycopg:// (contimg talks to "
                         "PostgreSQL through psycopg 3, the 'postgres' extra)")
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(f"scheme {scheme}:// is not supported; the database is sqlite:// or postgresql+psycopg://")
    if scheme == "sqlite":
        if not rest.startswith("//") or not rest[2:]:
            raise ValueError(f"{url!r}: a SQLite URL names a file: sqlite:////absolute/path.sqlite3")
        return url
    host_part, _, db_part = rest.partition("/")
    dbname = db_part.split("?", 1)[0]
    if not dbname:
        raise ValueError(f"{url!r} names no database: postgresql+psycopg://user:password@host:5432/dbname")
    return url


class IngestSettings(_Section):
    """Watching ``incoming/`` and grouping subbands."""

    enabled: bool = True
    poll_interval_s: float = Field(5.0, gt=0)
    stable_s: float = Field(10.0, ge=0)
    group_tolerance_s: float = Field(60.0, gt=0)
    incomplete_wait_s: float = Field(600.0, ge=0)
    min_subbands: int = Field(12, ge=1, le=16)
    # How the correlator's unprojected visibilities are phased (real files decide; see engine.convert).
    convention: Literal["unprojected_w0", "zenith"] = "unprojected_w0"


class CalibrationSettings(_Section):
    """Solving, QA gates and the registry's validity rules."""

    validity_h: float = Field(12.0, gt=0)
    fallback_h: float = Field(48.0, gt=0)
    dec_tolerance_deg: float = Field(0.5, gt=0)
    dec_window_deg: float = Field(2.5, gt=0)  # calibrators this close to the pointing transit in the beam
    pointing_change_deg: float = Field(1.0, gt=0)
    calibrator_threshold_jy: float = Field(1.0, gt=0)
    wait_deadline_h: float = Field(3.0, ge=0)  # after the expected transit
    wait_recheck_s: float = Field(300.0, gt=0)
    solint_s: float | None = None  # None: one gain solution per integration
    refant: int | None = None
    catalogue_files: list[Path] = Field(default_factory=list)
    # calibrator flux monitoring: a measured/catalogue ratio further than this from 1 raises an alert
    flux_alert_fraction: float = Field(0.2, gt=0, le=10)
    # target groups are RFI-flagged (as calibrators are inside the solve) before the apply;
    # off: the apply alone (about 2 s instead of 5 s of a 309 s group at full size)
    flag_targets: bool = True
    qa_min_snr: float = Field(10.0, ge=0)
    qa_max_flagged_fraction: float = Field(0.3, ge=0, le=1)
    qa_min_antenna_fraction: float = Field(0.8, ge=0, le=1)
    # the solution against its own data (engine.calibration.qa_data)
    qa_max_residual_ratio: float = Field(1.5, gt=0)
    qa_max_closure_phase_deg: float = Field(5.0, gt=0)
    qa_max_model_amp_deviation: float = Field(0.05, gt=0)
    qa_max_bad_antennas: int = Field(0, ge=0)
    # the atmosphere, not the solution: not gated unless set
    qa_max_phase_scatter_deg: float | None = Field(None, gt=0)

    def qa_thresholds(self) -> dict[str, float | int | None]:
        return {"min_snr": self.qa_min_snr, "max_flagged_fraction": self.qa_max_flagged_fraction,
                "min_antenna_fraction": self.qa_min_antenna_fraction,
                "max_residual_ratio": self.qa_max_residual_ratio,
                "max_closure_phase_deg": self.qa_max_closure_phase_deg,
                "max_model_amp_deviation": self.qa_max_model_amp_deviation,
                "max_bad_antennas": self.qa_max_bad_antennas,
                "max_phase_scatter_deg": self.qa_max_phase_scatter_deg}


class ImagingSettings(_Section):
    """Imaging backend and parameters (names as in engine.imaging.params.ImagingParams)."""

    backend: Literal["builtin", "wsclean"] = "builtin"
    wsclean_path: Path | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # e.g. {"robust": 0.0, "niter": 1000}
    qa: dict[str, Any] = Field(default_factory=dict)  # image QA thresholds (engine.imaging.qa)


class SourcesSettings(_Section):
    detect_snr: float = Field(5.0, gt=0)
    match_radius_arcsec: float = Field(10.0, gt=0)


class RetentionSettings(_Section):
    """Retention policies' daily run (crontab, UTC); policies themselves live in the database."""

    enabled: bool = True
    schedule_cron: str = "30 3 * * *"

    @field_validator("schedule_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from engine.triggers import TriggerError, parse_cron

        try:
            parse_cron(v)
        except (TriggerError, ValueError) as exc:
            raise ValueError(f"not a valid crontab expression: {exc}") from None
        return v


class BackupSettings(_Section):
    """The roadmap's backup schedule (§4.2). The crons seed the built-in backup triggers once (edit them
    in the Triggers screen afterwards); the keep ages and counts are read at every prune."""

    schedules: bool = True  # seed the four built-in backup triggers at start-up (once; never recreated)
    database_cron: str = "0 * * * *"
    database_keep_days: float = Field(7.0, gt=0)
    caltables_cron: str = "15 2 * * *"
    caltables_keep_days: float = Field(90.0, gt=0)
    config_check_cron: str = "*/10 * * * *"  # how often the config file's content hash is compared
    config_keep_days: float = Field(30.0, gt=0)
    full_cron: str = "0 4 * * 0"
    full_keep_days: float = Field(28.0, gt=0)
    full_includes_ms: bool = False  # measurement sets are large and can be remade from the HDF5 files
    keep_min: int = Field(1, ge=1)  # newest valid backups of each kind kept whatever their age
    offsite_dir: Path | None = None  # e.g. a mounted NAS; each weekly full is copied there
    offsite_keep: int = Field(4, ge=1)  # full backups kept in the off-site dir

    @field_validator("database_cron", "caltables_cron", "config_check_cron", "full_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from engine.triggers import TriggerError, parse_cron

        try:
            parse_cron(v)
        except (TriggerError, ValueError) as exc:
            raise ValueError(f"not a valid crontab expression: {exc}") from None
        return v

    @field_validator("offsite_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class JupyterSettings(_Section):
    """The Jupyter server behind the dashboard's Jupyter page.

    ``managed``: the console runs ``jupyter_server`` itself on ``host``:``port`` (0 = any free port)
    with its notebooks dir as root and a random token; ``external``: an operator-run server at
    ``url`` with ``token``; ``off``: the page shows "not available"."""

    mode: Literal["off", "managed", "external"] = "managed"
    host: str = "127.0.0.1"
    port: int = Field(8888, ge=0, le=65535)
    url: str | None = None
    token: str | None = None
    public_url: str | None = None  # what browsers open (e.g. behind a proxy); default: the server URL
    max_disk_mb: int = Field(10240, ge=1)
    startup_timeout_s: float = Field(30.0, gt=0)


class TuiSettings(_Section):
    """The terminal console."""

    refresh_s: float = Field(2.0, ge=0.2)
    theme: str = "textual-dark"
    keymap: dict[str, str] = Field(default_factory=dict)


class AlertSettings(_Section):
    """Where fired alerts go: policies name channels (webhook, slack, email); the addresses live here.
    A channel without an address is recorded as skipped, never silently dropped."""

    builtin: bool = True  # seed the catalogue's alerts (engine/alerts/catalog.py) as policies
    webhook_url: str | None = Field(None, pattern=r"^https?://")
    slack_webhook_url: str | None = Field(None, pattern=r"^https?://")
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    attempts: int = Field(4, ge=1, le=20)
    retry_wait_s: float = Field(2.0, ge=0, le=600)  # first wait; doubles each attempt
    email_to: list[str] = Field(default_factory=list)
    email_from: str = "contimg@localhost"
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = Field(10_000_000, ge=10_000)
    backups: int = Field(5, ge=0)


class _FileSource(PydanticBaseSettingsSource):
    """The TOML config file layer, read once by load_settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_VALUES.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES.get())


class Settings(BaseSettings):
    """Effective configuration of one contimg process."""

    model_config = SettingsConfigDict(
        env_prefix="CONTIMG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    read_only: bool = False
    api: ApiSettings = Field(default_factory=ApiSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    backups: BackupSettings = Field(default_factory=BackupSettings)
    jupyter: JupyterSettings = Field(default_factory=JupyterSettings)
    tui: TuiSettings = Field(default_factory=TuiSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    # Set by load_settings; not a configurable key.
    _config_file: Path | None = None

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: CLI (init) > environment > config file.
        return (init_settings, env_settings, _FileSource(settings_cls))

    # ---- paths -------------------------------------------------------------
    @property
    def config_file(self) -> Path | None:
        return self._config_file

    @property
    def db_path(self) -> Path:
        """The SQLite database file (the default; see ``database_url`` for PostgreSQL)."""
        url = self.database.url
        if url and url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        return self.data_dir / "pipeline.sqlite3"

    @property
    def database_url(self) -> str:
        """What ``engine.db.Database`` opens: ``database.url``, or the SQLite file of the data dir."""
        return self.database.url or f"sqlite:///{self.data_dir / 'pipeline.sqlite3'}"

    @property
    def database_is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def database_label(self) -> str:
        """The database for messages: the SQLite file, or the PostgreSQL URL without its password."""
        if self.database_is_sqlite:
            return str(self.db_path)
        return mask_password(self.database_url)

    def subdir(self, name: str) -> Path:
        if name not in DATA_SUBDIRS:
            raise KeyError(name)
        return self.data_dir / name

    @property
    def incoming_dir(self) -> Path:
        return self.subdir("incoming")

    @property
    def ms_dir(self) -> Path:
        return self.subdir("ms")

    @property
    def caltables_dir(self) -> Path:
        return self.subdir("caltables")

    @property
    def images_dir(self) -> Path:
        return self.subdir("images")

    @property
    def exports_dir(self) -> Path:
        return self.subdir("exports")

    @property
    def backups_dir(self) -> Path:
        return self.subdir("backups")

    @property
    def notebooks_dir(self) -> Path:
        return self.subdir("notebooks")

    @property
    def logs_dir(self) -> Path:
        return self.subdir("logs")

    def paths(self) -> dict[str, Path]:
        out = {"data_dir": self.data_dir}
        if self.database_is_sqlite:  # a PostgreSQL database has no path (cmd_config prints its URL)
            out["database"] = self.db_path
        out.update({name: self.subdir(name) for name in DATA_SUBDIRS})
        return out

    def ensure_dirs(self) -> None:
        """Create the data dir tree; an unwritable location is a ConfigError, not a traceback."""
        try:
            for path in [self.data_dir, *(self.subdir(n) for n in DATA_SUBDIRS)]:
                path.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"data_dir {self.data_dir} is not writable: {exc.strerror or exc}"
            ) from None


def mask_password(url: str) -> str:
    """``scheme://user:***@host/db`` for messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _has_key(tree: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _drop_none(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from None


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the effective settings from every layer.

    ``config_file`` None means the XDG default (or ``CONTIMG_CONFIG``), which may
    be absent; an explicitly named file must exist. ``overrides`` are CLI values
    (nested dicts, ``None`` values ignored).
    """
    explicit = config_file is not None or "CONTIMG_CONFIG" in os.environ
    path = Path(config_file or os.environ.get("CONTIMG_CONFIG") or default_config_file())
    path = path.expanduser()
    file_values: dict[str, Any] = {}
    if path.exists():
        file_values = read_config_file(path)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")

    cli = _drop_none(overrides or {})
    token = _FILE_VALUES.set(file_values)
    try:
        settings = Settings(**cli)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        env_names = {"CONTIMG_" + "__".join(str(p).upper() for p in loc[:n]) for n in range(1, len(loc) + 1)}
        env_hit = sorted(k for k in os.environ if k.upper() in env_names)
        if _has_key(cli, loc):
            where = "command-line option"
        elif env_hit:
            where = f"environment {env_hit[-1]}"
        elif _has_key(file_values, loc):
            where = f"config file {path}"
        else:
            where = "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"{where}: {key}: {msg}") from None
    finally:
        _FILE_VALUES.reset(token)
    settings._config_file = path if path.exists() else None
    return settings
