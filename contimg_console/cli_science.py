"""``contimg simulate|convert|calibrate|applycal|cal|image|sources``: each stage by hand, on files."""

from __future__ import annotations

import argparse
from pathlib import Path

from contimg_console.cli_common import _database, migrated_database
from engine.errors import ConfigError, ContimgError
from engine.settings import Settings


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
    db = migrated_database(settings)
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

    db = migrated_database(settings)
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
