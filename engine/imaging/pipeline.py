"""Top-level imaging entry point (picklable, plain-value result)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time

from engine.errors import PermanentStageError, TransientStageError

from .params import ImagingParams
from .qa import assess_result

BACKENDS = ("builtin", "wsclean")


def _run_builtin(ms_path: str, p: ImagingParams):
    from .imager import make_image, plan_chan_average
    from .msread import read_ms

    t0 = time.perf_counter()
    k = p.chan_average
    if k == 0:
        try:
            k, _ = plan_chan_average(ms_path, p)
        except ValueError as exc:
            raise PermanentStageError(f"{ms_path}: {exc}") from exc
    t_plan = time.perf_counter() - t0
    data = read_ms(ms_path, p.data_column, p.fallback_to_data, p.chunk_rows, k, p.fov_deg)
    data.read_seconds += t_plan
    try:
        res = make_image(data, p)
    except ValueError as exc:
        raise PermanentStageError(f"imaging {ms_path} failed: {exc}") from exc
    res.extra["chan_average"] = data.extra.get("chan_average", 1)
    res.extra["data_column_requested"] = data.data_column_requested
    return res


def image_ms(
    ms_path: str,
    out_dir: str,
    params: dict | ImagingParams | None = None,
    backend: str = "builtin",
    *,
    prefix: str | None = None,
    qa_thresholds: dict | None = None,
    wsclean_path: str | None = None,
    fail_on_qa: bool = False,
    png_size: int = 512,
) -> dict:
    """Image ``ms_path`` into ``out_dir`` and return plain values.

    Products ``<prefix>-image.fits``, ``-model.fits``, ``-residual.fits``,
    ``-psf.fits`` and ``-image.png`` are written to a temporary directory
    inside ``out_dir`` and moved into place only when all succeeded.
    Raises PermanentStageError (bad input/parameters, missing wsclean, QA
    failure when ``fail_on_qa``) or TransientStageError (disk full, locks).
    """
    t0 = time.perf_counter()
    try:
        p = ImagingParams.from_any(params)
    except (ValueError, TypeError) as exc:
        raise PermanentStageError(str(exc)) from exc
    if backend not in BACKENDS:
        raise PermanentStageError(f"unknown imaging backend {backend!r}; use one of {BACKENDS}")
    ms_path = os.path.abspath(ms_path.rstrip("/"))
    prefix = prefix or os.path.splitext(os.path.basename(ms_path))[0]
    try:
        os.makedirs(out_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".imaging-", dir=out_dir)
    except OSError as exc:
        raise TransientStageError(f"cannot create output directory {out_dir}: {exc}") from exc
    try:
        if backend == "builtin":
            res = _run_builtin(ms_path, p)
        else:
            from .wsclean import run_wsclean

            res = run_wsclean(ms_path, p, wsclean_path=wsclean_path, work_dir=tmp)
        from .fits_io import write_png, write_products

        t_w = time.perf_counter()
        history = p.history_lines() + [f"contimg backend={backend} datacolumn={res.data_column}"]
        names = write_products(tmp, prefix, res, history)
        names["png"] = write_png(os.path.join(tmp, f"{prefix}-image.png"), res.image, png_size)
        qa = assess_result(res, qa_thresholds)
        products = {}
        for kind, path in names.items():
            final = os.path.join(out_dir, os.path.basename(path))
            os.replace(path, final)
            products[kind] = final
        res.timings["writing"] = time.perf_counter() - t_w
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EAGAIN, errno.EBUSY, errno.EDQUOT):
            raise TransientStageError(f"imaging {ms_path}: {exc}") from exc
        raise PermanentStageError(f"imaging {ms_path}: {exc}") from exc
    except MemoryError as exc:
        raise TransientStageError(f"imaging {ms_path}: out of memory") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.timings["wall"] = time.perf_counter() - t0
    out = {
        "ms_path": ms_path,
        "backend": res.backend,
        "products": products,
        "beam": {k: float(v) for k, v in res.beam.to_dict().items()},
        "cell_arcsec": float(res.cell_arcsec),
        "npix": int(res.npix),
        "noise_jy": float(res.noise),
        "peak_jy": float(res.peak),
        "dynamic_range": float(res.dynamic_range),
        "qa": qa,
        "timings": {k: float(v) for k, v in res.timings.items()},
        "data_column": res.data_column,
        "data_column_requested": p.data_column,
        "column_note": res.column_note,
        "n_iter": int(res.n_iter),
        "n_major": int(res.n_major),
        "stop_reason": res.stop_reason,
        "ref_freq_hz": float(res.ref_freq),
        "bandwidth_hz": float(res.bandwidth),
        "phase_dir_deg": [float(x) * 180.0 / 3.141592653589793 for x in res.phase_dir],
        "params": p.to_dict(),
        "extra": {k: v for k, v in res.extra.items() if isinstance(v, (int, float, str, bool, dict))},
    }
    if fail_on_qa and not qa["passed"]:
        raise PermanentStageError(f"image QA failed for {ms_path}: " + "; ".join(qa["reasons"]))
    return out
