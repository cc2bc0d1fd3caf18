"""The ``contimg`` command line.

``contimg`` alone opens the console (TUI + engine + scheduler + REST on one loop);
``contimg serve`` runs the same runtime headless for systemd. Errors in config,
data dir or ports end in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ContimgError
from engine.settings import Settings, load_settings

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


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


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    from engine.db import Database

    settings.ensure_dirs()
    return Database(settings.db_path)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    db = _database(settings)
    if args.db_command == "upgrade":
        before = db.current_revision()
        db.upgrade()
        print(f"{settings.db_path}: {before} → {db.current_revision()} (head)")
    else:
        rev, head = db.current_revision(), db.head_revision()
        print(f"{settings.db_path}: revision {rev}" + (" (head)" if rev == head else f" (head is {head})"))
    return 0


def cmd_engine(settings: Settings, args: argparse.Namespace) -> int:
    from engine.processing.pause import write_paused

    db = _database(settings)
    db.upgrade()
    write_paused(db, args.action == "pause")
    print(f"engine {'paused' if args.action == 'pause' else 'resumed'} ({settings.db_path})")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from engine.processing.status import pipeline_status

    db = _database(settings)
    db.upgrade()
    report = pipeline_status(db)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"engine: {'PAUSED' if report['paused'] else 'not paused'}")
    print("groups by state:" + ("" if report["groups"] else " none"))
    for state, n in report["groups"].items():
        print(f"  {state:<24} {n}")
    print("jobs by state:" + ("" if report["jobs"] else " none"))
    for state, n in report["jobs"].items():
        print(f"  {state:<24} {n}")
    print(f"leases held: {len(report['leases'])}")
    for lease in report["leases"]:
        print(f"  {lease['id']} {lease['type']} group {lease['group_id']} by {lease['claimed_by']} "
              f"until {lease['lease_until']}")
    print(f"failed jobs: {len(report['failed'])}")
    for job in report["failed"]:
        kind = f" [{job['error_kind']}]" if job["error_kind"] else ""
        print(f"  {job['id']} {job['type']} group {job['group_id']} after {job['attempts']} attempts"
              f"{kind}: {job['error']}")
    if report["interrupted_not_failed"]:
        print(f"jobs interrupted by crashes and requeued (no attempt spent): {report['interrupted_not_failed']}")
    return 0


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from engine.services import Services

    def when(text: str, flag: str) -> datetime:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise ContimgError(f"{flag} {text!r}: give an ISO time such as 2026-11-29T06:00") from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    db = _database(settings)
    db.upgrade()
    try:
        result = Services(db, settings).queue.reprocess_range(
            when(args.since, "--from"), when(args.until, "--to"), args.stage,
            by=os.environ.get("USER", "operator"), priority=args.priority)
    except ValueError as exc:
        raise ContimgError(str(exc)) from None
    print(f"{len(result['queued'])} group(s) queued from {args.stage} at priority {args.priority}; "
          f"{len(result['skipped'])} skipped")
    for gid, why in result["skipped"].items():
        print(f"  skipped {gid}: {why}")
    return 0


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    from engine.services import PipelineControl

    db = _database(settings)
    db.upgrade()
    control = PipelineControl(db)
    if args.failed:
        result = control.retry_failed(args.reason, by=f"cli:{os.environ.get('USER', 'operator')}")
        print(f"retried {len(result['retried'])} failed job(s)"
              + (" that failed only through interruptions" if args.reason == "interrupted" else ""))
        for job_id in result["retried"]:
            print(f"  {job_id}")
        for job_id, why in result["skipped"].items():
            print(f"  not retried {job_id}: {why}")
        return 0 if not result["skipped"] else EXIT_RUNTIME
    if not args.jobs:
        raise ContimgError("give job ids, or --failed [--reason interrupted|any]")
    code = 0
    for job_id in args.jobs:
        try:
            job = control.retry(job_id, by=f"cli:{os.environ.get('USER', 'operator')}")
            print(f"{job.id} {job.type} group {job.group_id}: queued again")
        except (ContimgError, KeyError) as exc:
            print(f"{job_id}: not retried: {exc}", file=sys.stderr)
            code = EXIT_RUNTIME
    return code


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from collections import Counter

    from engine.ingest import Ingestor

    db = _database(settings)
    db.upgrade()
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


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from engine.simulator import simulate

    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise ConfigError(f"--start {args.start!r} is not an ISO time (e.g. 2026-11-29T08:00:00)") from None
    groups = simulate(args.out, groups=args.groups, preset=args.preset, dec_deg=args.dec, start=start,
                      seed=args.seed, faults=tuple(args.faults), rfi=args.rfi, antenna_file=args.antenna_file)
    for g in groups:
        print(f"{g.start:%Y-%m-%dT%H:%M:%S}: {len(g.files)} files, truth {g.manifest}")
    return 0


def cmd_convert(settings: Settings, args: argparse.Namespace) -> int:
    from engine.convert import convert_group

    result = convert_group(args.files, args.out, convention=args.convention,
                           min_subbands=settings.ingest.min_subbands)
    print(f"{result.ms_path}: {result.rows} rows, {result.channels} channels, {result.antennas} antennas"
          + (f", missing subbands {result.missing_subbands}" if result.missing_subbands else ""))
    return 0


def _ms_meta(ms: Path) -> tuple[float, float, float]:
    """(start MJD, end MJD, phase-centre dec in degrees) of an MS."""
    import math

    import numpy as np
    from casacore.tables import table

    if not (ms / "table.dat").exists():
        raise ContimgError(f"{ms} is not a Measurement Set")
    with table(str(ms), ack=False) as t:
        times = t.getcol("TIME")
    with table(str(ms / "FIELD"), ack=False) as f:
        dec = float(np.ravel(f.getcol("PHASE_DIR"))[1])
    return float(times.min()) / 86400, float(times.max()) / 86400, math.degrees(dec)


def _num(value: object, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "n/a"


def cmd_calibrate(settings: Settings, args: argparse.Namespace) -> int:
    from engine.calibration.solve_ms import solve_ms
    from engine.calibration.catalogue import merged_catalogue
    from engine.calibration.transit import best_calibrator

    cfg = settings.calibration
    name = args.calibrator
    if name is None:
        start, end, dec = _ms_meta(args.ms)
        best = best_calibrator(start, end, dec, threshold_jy=cfg.calibrator_threshold_jy,
                               catalogue=merged_catalogue(cfg.catalogue_files or None))
        if best is None:
            raise ContimgError(f"no catalogue calibrator transits through the beam of {args.ms}; name one with "
                               f"--calibrator")
        name = best.calibrator.name
    out = args.out or settings.caltables_dir / args.ms.name.removesuffix(".ms")
    result = solve_ms(str(args.ms), name, out, refant=cfg.refant, solint_s=cfg.solint_s,
                      qa_thresholds=cfg.qa_thresholds(), catalogue_paths=cfg.catalogue_files or None)
    m = result["metrics"]
    g = result["beam_geometry"]
    print(f"calibrator {result['calibrator']}, refant {result['refant_name']}")
    print(f"primary beam: {g['mode']}, {g['dish_diameter_m']:g} m dish ({g['dish_source']}); {g['reason']}")
    print(f"QA {'passed' if result['qa_passed'] else 'FAILED'}: SNR {_num(m.get('snr_median'), '.1f')}, "
          f"flagged {_num(m.get('data_flagged_fraction'), '.3f')}, antennas {m.get('n_antennas_with_solutions')}/"
          f"{m.get('n_antennas')}, residual {_num(m.get('residual_ratio'), '.2f')} x thermal, closure phase "
          f"{_num(m.get('closure_phase_rms_deg'), '.2f')} deg, amplitude/model "
          f"{_num(m.get('model_amp_ratio_min'), '.4f')}..{_num(m.get('model_amp_ratio_max'), '.4f')}")
    for reason in result["qa_reasons"]:
        print(f"  - {reason}")
    print(f"tables: {result['bandpass_table']} {result['gain_table']}")
    if args.register:
        from engine.calibration.registry import Registry
        from engine.processing.stage_calibrate import _clean

        db = _database(settings)
        db.upgrade()
        start, end, dec = _ms_meta(args.ms)
        with db.session() as s:
            cs, retired = Registry(cfg).register(
                s, name=args.ms.name.removesuffix(".ms") + "_" + result["calibrator"], calibrator=result["calibrator"],
                group_id=None, ms_path=str(args.ms.absolute()), refant=str(result["refant_name"]),
                solver_params={"solint_s": cfg.solint_s}, dec_deg=dec, mid_mjd=(start + end) / 2,
                qa_metrics=_clean(m), qa_passed=result["qa_passed"], qa_reasons=result["qa_reasons"],
                bandpass=str(Path(result["bandpass_table"]).absolute()),
                gain=str(Path(result["gain_table"]).absolute()))
            print(f"registered {cs.name} as {cs.status}" + (f"; retired {', '.join(retired)}" if retired else ""))
    return 0 if result["qa_passed"] else 1


def cmd_applycal(settings: Settings, args: argparse.Namespace) -> int:
    from engine.calibration.apply import apply_calibration

    if bool(args.bandpass) != bool(args.gains):
        raise ConfigError("give both --bandpass and --gains, or neither (then the registry chooses)")
    if args.bandpass:
        out = apply_calibration(str(args.ms), str(args.bandpass), str(args.gains))
        print(f"applied to {out['rows']} rows ({out['newly_flagged']} samples newly flagged)")
        return 0
    from engine.calibration.registry import Registry
    from engine.processing.stage_calibrate import run_calibrate

    start, end, dec = _ms_meta(args.ms)
    db = _database(settings)
    db.upgrade()
    with db.session() as s:
        decision = Registry(settings.calibration).find_best_calibration(s, (start + end) / 2, dec)
    print(f"{decision.action}: {decision.reason}")
    if decision.action != "use":
        return 1
    out = run_calibrate({"ms": str(args.ms), "target_mjd": (start + end) / 2, "decision": decision.as_dict()})
    print(f"applied {', '.join(out['sets'])} ({out['mode']}) to {out['rows']} rows")
    return 0


def cmd_cal(settings: Settings, args: argparse.Namespace) -> int:
    from engine.calibration.registry import Registry

    db = _database(settings)
    db.upgrade()
    with db.session() as s:
        decision = Registry(settings.calibration).find_best_calibration(s, args.mjd, args.dec)
    print(f"decision: {decision.action}" + (f" ({decision.mode})" if decision.mode else ""))
    print(f"why: {decision.reason}")
    for u in decision.sets:
        print(f"  set {u.name} ({u.calibrator}, MJD {u.mid_mjd:.4f}) weight {u.weight:.2f}: {u.bandpass}, {u.gain}")
    if decision.warning:
        print(f"warning: {decision.warning}")
    if decision.wait_until:
        print(f"waits until {decision.wait_until:%Y-%m-%d %H:%M} UTC at the latest")
    return 0 if decision.action == "use" else 1


def cmd_image(settings: Settings, args: argparse.Namespace) -> int:
    from engine.imaging.pipeline import image_ms

    cfg = settings.imaging
    out = args.out or settings.images_dir / args.ms.name.removesuffix(".ms")
    result = image_ms(str(args.ms), str(out), dict(cfg.params), args.backend or cfg.backend,
                      qa_thresholds=dict(cfg.qa) or None,
                      wsclean_path=str(cfg.wsclean_path) if cfg.wsclean_path else None)
    beam = result["beam"]
    print(f"{result['products']['image']}: {result['npix']}² px of {result['cell_arcsec']:.2f}\", beam "
          f"{beam.get('bmaj_arcsec', 0):.1f}\" x {beam.get('bmin_arcsec', 0):.1f}\", noise {result['noise_jy']:.3g} "
          f"Jy/beam, peak {result['peak_jy']:.3g} Jy/beam, {result['data_column']}")
    qa = result["qa"]
    print("QA passed" if qa["passed"] else "QA FAILED: " + "; ".join(qa["reasons"]))
    return 0 if qa["passed"] else 1


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    from engine.sources.finder import find_sources_fits

    if not args.image.is_file():
        raise ContimgError(f"{args.image}: no such FITS file")
    found = find_sources_fits(str(args.image), detect_sigma=args.snr or settings.sources.detect_snr)
    print(f"{len(found)} sources")
    print(f"{'ra_deg':>11} {'dec_deg':>10} {'peak_Jy':>9} {'int_Jy':>9} {'err_Jy':>8} {'snr':>7}")
    for src in found:
        print(f"{src['ra_deg']:11.5f} {src['dec_deg']:10.5f} {src['peak_jy']:9.4f} {src['int_flux_jy']:9.4f} "
              f"{src['int_flux_err_jy']:8.4f} {src['snr']:7.1f}")
    return 0


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    from engine.auth import Accounts

    db = _database(settings)
    db.upgrade()
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

    db = _database(settings)
    db.upgrade()
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
