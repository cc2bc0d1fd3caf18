"""The ``contimg`` command line.

``contimg`` alone opens the console (TUI + engine + scheduler + REST on one loop);
``contimg serve`` runs the same runtime headless for systemd. Errors in config,
data dir or ports end in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ContimgError
from engine.settings import Settings, load_settings

from contimg_console.cli_common import EXIT_CONFIG, EXIT_RUNTIME, _database, migrated_database  # noqa: F401 - re-exported


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contimg", description="DSA-110 continuum imaging console")
    p.add_argument("--data-dir", type=Path, help="data directory (default ~/.local/share/contimg)")
    p.add_argument("--config", type=Path, help="config file (default ~/.config/contimg/config.toml)")
    p.add_argument("--host", help="REST bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="REST port (default 8000)")
    p.add_argument("--read-only", action="store_true", default=None, help="no processing, no writes from the console")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    from contimg_console import __version__

    p.add_argument("--version", action="version", version=f"contimg {__version__}")
    sub = p.add_subparsers(dest="command")

    sub.add_parser("console", help="open the terminal console (the default)")

    demo = sub.add_parser("demo", help="the console on a separate demo data dir fed by the simulator")
    demo.add_argument("--groups", type=int, default=6)
    demo.add_argument("--interval", type=float, default=8.0, help="seconds between simulated groups")

    serve = sub.add_parser("serve", help="run engine, scheduler and REST headless (for systemd)")
    serve.add_argument("--host", dest="serve_host")
    serve.add_argument("--port", dest="serve_port", type=int)
    serve.add_argument("--dashboard", type=Path, help="serve a built dashboard's static files at /")

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the effective config and every path")
    show.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate pipeline.sqlite3 to the newest revision")
    db_sub.add_parser("current", help="show the database's revision")

    eng = sub.add_parser("engine", help="pause or resume processing (takes effect within one poll)")
    eng.add_argument("action", choices=["pause", "resume"])

    status = sub.add_parser("status", help="pipeline state counts, leases and failures")
    status.add_argument("--json", action="store_true")

    retry = sub.add_parser("retry", help="put failed jobs back in the queue (by id, or in bulk with --failed)")
    retry.add_argument("jobs", nargs="*", help="job ids (see contimg status)")
    retry.add_argument("--failed", action="store_true", help="every failed job matching --reason")
    retry.add_argument("--reason", choices=["interrupted", "any"], default="interrupted",
                       help="interrupted: only jobs failed by crashes of their holder, not by an error of their own")

    rep = sub.add_parser("reprocess", help="send archived groups in a time range back to a stage, below live priority")
    rep.add_argument("--from", dest="since", required=True, help="ISO time (UTC), inclusive")
    rep.add_argument("--to", dest="until", required=True, help="ISO time (UTC), exclusive")
    rep.add_argument("--stage", choices=["convert", "calibrate", "image", "measure"], default="calibrate",
                     help="the first stage to run again (default calibrate: new calibration, new images)")
    rep.add_argument("--priority", type=int, default=500, help="lower runs first; live targets run at 100")

    ingest = sub.add_parser("ingest", help="register subband files by hand (idempotent)")
    ingest.add_argument("paths", nargs="+", type=Path)

    sim = sub.add_parser("simulate", help="write simulated DSA-110 subband groups (UVH5) with a truth manifest")
    sim.add_argument("--out", type=Path, required=True)
    sim.add_argument("--groups", type=int, default=1)
    sim.add_argument("--preset", choices=["tiny", "small", "full"], default="small")
    sim.add_argument("--dec", type=float, default=54.57, help="pointing declination (deg)")
    sim.add_argument("--start", help="ISO time of the first group (default: the calibrator transit)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--fault", action="append", default=[], dest="faults",
                     choices=["missing_subband", "truncated_file", "nans", "timestamp_jitter"])
    sim.add_argument("--rfi", action="store_true")
    sim.add_argument("--antenna-file", type=Path, help="CSV of station positions (e.g. the public DSA-110 table)")

    conv = sub.add_parser("convert", help="convert the subband files of one group (or one UVH5 file) to an MS")
    conv.add_argument("files", nargs="+", type=Path)
    conv.add_argument("--out", type=Path, required=True, help="the Measurement Set to write (*.ms)")
    conv.add_argument("--convention", default="unprojected_w0", help="phase convention of the input files")

    cal = sub.add_parser("calibrate", help="flag, solve bandpass and gains on a calibrator MS, QA, write tables")
    cal.add_argument("ms", type=Path)
    cal.add_argument("--calibrator", help="catalogue name (default: the brightest transiting one)")
    cal.add_argument("--out", type=Path, help="directory for the tables (default: caltables/<ms name>)")
    cal.add_argument("--register", action="store_true", help="register the set in the database registry")

    apply = sub.add_parser("applycal", help="apply the registry's choice (or given tables) to CORRECTED_DATA")
    apply.add_argument("ms", type=Path)
    apply.add_argument("--bandpass", type=Path)
    apply.add_argument("--gains", type=Path)

    calreg = sub.add_parser("cal", help="the calibration registry")
    calreg_sub = calreg.add_subparsers(dest="cal_command", required=True)
    find = calreg_sub.add_parser("find", help="which calibration a target would use, and why")
    find.add_argument("--mjd", type=float, required=True)
    find.add_argument("--dec", type=float, required=True)

    img = sub.add_parser("image", help="image an MS (Stokes I) into FITS products and a PNG")
    img.add_argument("ms", type=Path)
    img.add_argument("--backend", choices=["builtin", "wsclean"], default=None)
    img.add_argument("--out", type=Path, help="output directory (default: images/<ms name>)")

    srcs = sub.add_parser("sources", help="find and fit sources in a FITS image")
    srcs.add_argument("image", type=Path)
    srcs.add_argument("--snr", type=float, default=None, help="detection threshold in sigma (default from config)")

    user = sub.add_parser("user", help="dashboard users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user (password read from stdin or prompted)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_sub.add_parser("list", help="list users")

    token = sub.add_parser("token", help="API tokens for scripts")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    create.add_argument("--user", help="owner (default: a user named after the token, created with that role)")
    from contimg_console import cli_backup

    cli_backup.add_parser(sub)
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    host = getattr(args, "serve_host", None) or args.host
    port = getattr(args, "serve_port", None) or args.port
    overrides: dict[str, Any] = {
        "data_dir": args.data_dir,
        "read_only": args.read_only,
        "api": {"host": host, "port": port, "dashboard_dir": getattr(args, "dashboard", None)},
        "logging": {"level": args.log_level},
    }
    return load_settings(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        command = args.command or "console"
        handler = _COMMANDS[command]
        return handler(settings, args) or 0
    except ConfigError as exc:
        print(f"contimg: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ContimgError as exc:
        print(f"contimg: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130


# ---- commands ------------------------------------------------------------------
def cmd_console(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_console(settings))


async def _console(settings: Settings, feeder: Any = None) -> int:
    from contimg_console.app import ContimgApp
    from contimg_console.runtime import Runtime

    runtime = Runtime(settings)
    await runtime.start()  # fails with one line before the screen takes over
    if feeder is not None:
        await feeder.start()

    def status() -> dict[str, Any]:
        return {**runtime.status(), "demo": feeder is not None}

    try:
        app = ContimgApp(runtime.services, status=status, refresh_interval=settings.tui.refresh_s,
                         read_only=settings.read_only, keymap=settings.tui.keymap, theme=settings.tui.theme)
        await app.run_async()
    finally:
        if feeder is not None:
            await feeder.stop()
        await runtime.stop()
    return 0


def demo_settings(args: argparse.Namespace) -> Settings:
    """The demo never touches the real data dir: its own dir beside it, fast settings."""
    from engine.demo import DEMO_OVERRIDES
    from engine.settings import default_data_dir

    base = settings_from_args(args)
    data_dir = args.data_dir or default_data_dir().with_name("contimg-demo")
    overrides: dict[str, Any] = {**DEMO_OVERRIDES, "data_dir": data_dir}
    overrides["api"] = {"host": base.api.host, "port": base.api.port}
    return load_settings(args.config, overrides)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from engine.demo import DemoFeeder

    settings = demo_settings(args)
    settings.ensure_dirs()
    feeder = DemoFeeder(settings.incoming_dir, settings.data_dir / "demo-staging", groups=args.groups,
                        interval_s=args.interval)
    return asyncio.run(_console(settings, feeder))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from contimg_console.runtime import Runtime

    runtime = Runtime(settings, console_log=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from sdnotify import SystemdNotifier

    systemd = SystemdNotifier()  # Type=notify: READY once serving; a no-op outside systemd
    try:
        await runtime.start()
        print(f"contimg serving REST at {runtime.api_url} (data dir {settings.data_dir})", file=sys.stderr,
              flush=True)
        systemd.notify(f"READY=1\nSTATUS=serving REST at {runtime.api_url}")
        await stop.wait()
        systemd.notify("STOPPING=1\nSTATUS=stopping: releasing running jobs")
    finally:
        await runtime.stop()
    return 0


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    data = settings.model_dump(mode="json")
    data["config_file"] = str(settings.config_file) if settings.config_file else None
    paths = {k: str(v) for k, v in settings.paths().items()}
    if not settings.database_is_sqlite:
        paths["database"] = settings.database_label
        if data.get("database", {}).get("url"):
            data["database"]["url"] = settings.database_label  # never print the password
    if args.json:
        print(json.dumps({"settings": data, "paths": paths}, indent=2))
        return 0
    print(f"config file: {data.pop('config_file') or '(none; defaults, env and flags only)'}")
    for key, value in _flatten(data):
        print(f"{key} = {json.dumps(value)}")
    print("\npaths:")
    for key, value in paths.items():
        print(f"  {key:<10} {value}")
    return 0


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value) and key not in (
                "keymap", "stage_concurrency"):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    db = _database(settings)
    if args.db_command == "upgrade":
        before = db.current_revision()
        db.upgrade()
        print(f"{settings.database_label}: {before} → {db.current_revision()} (head)")
    else:
        rev, head = db.current_revision(), db.head_revision()
        print(f"{settings.database_label}: revision {rev}" + (" (head)" if rev == head else f" (head is {head})"))
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from collections import Counter

    from engine.ingest import Ingestor

    db = migrated_database(settings)
    ingestor = Ingestor(settings, db)
    results = ingestor.register(args.paths)
    ready, incomplete = ingestor.finalize()
    counts = Counter("already known" if r.status == "known" else r.status for r in results)
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for r in results:
        if r.error:
            print(f"  {r.status}: {r.path}: {r.error}")
    for gid in ready:
        print(f"{gid} ready")
    for gid in incomplete:
        print(f"{gid} incomplete")
    return 0


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    from engine.auth import Accounts

    db = migrated_database(settings)
    accounts = Accounts(db)
    if args.user_command == "list":
        for u in accounts.list_users():
            print(f"{u['username']:<24} {u['role']:<9} {'disabled' if u['disabled'] else ''}")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
    if len(password) < 8:
        raise ContimgError("password must have at least 8 characters")
    accounts.add_user(args.name, password, args.role)
    print(f"user {args.name} added with role {args.role}")
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from engine.auth import Accounts, AuthError

    db = migrated_database(settings)
    accounts = Accounts(db)
    owner = args.user or args.name
    try:
        secret = accounts.create_token(owner, args.name, args.role)
    except AuthError:
        if args.user:
            raise
        accounts.add_user(owner, None, args.role)  # a script identity: no password, token only
        secret = accounts.create_token(owner, args.name, args.role)
    print(secret)
    print(f"(token {args.name!r} for user {owner!r}, role {args.role}; shown once, store it now)", file=sys.stderr)
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from contimg_console.cli_backup import cmd_backup as run

    return run(settings, args)


from contimg_console.cli_ops import cmd_engine, cmd_reprocess, cmd_retry, cmd_status  # noqa: E402
from contimg_console.cli_science import (  # noqa: E402
    cmd_applycal,
    cmd_cal,
    cmd_calibrate,
    cmd_convert,
    cmd_image,
    cmd_simulate,
    cmd_sources,
)

_COMMANDS = {
    "backup": cmd_backup,
    "console": cmd_console,
    "demo": cmd_demo,
    "serve": cmd_serve,
    "config": cmd_config,
    "db": cmd_db,
    "status": cmd_status,
    "retry": cmd_retry,
    "reprocess": cmd_reprocess,
    "engine": cmd_engine,
    "ingest": cmd_ingest,
    "simulate": cmd_simulate,
    "convert": cmd_convert,
    "calibrate": cmd_calibrate,
    "applycal": cmd_applycal,
    "cal": cmd_cal,
    "image": cmd_image,
    "sources": cmd_sources,
    "user": cmd_user,
    "token": cmd_token,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
