"""One calibrator group and three target groups through the real engine, files to photometry.

What the operator cares about: how long one ~309 s group takes from its last subband
file landing in ``incoming/`` to its photometry, and how far ahead of the cadence the
host stays.  The benchmark simulates (not timed) one calibrator transit (J0834+555) and
``--targets`` consecutive target groups an hour later at the same declination, starts
``contimg serve`` as a subprocess on a fresh data dir (real database, real process pool,
REST on loopback), and delivers the groups the way the correlator does (16 files, each
written hidden and renamed): the calibrator first, then one target group every
``--interval`` seconds (default: the cadence / 5, i.e. the data arriving five times faster
than real time, for ``full``).  Stage times come from the job table (queue wait and run
time of every job); the end-to-end time of a group runs from its delivery to its measure
job's end.  Peak RSS per worker process is its kernel high-water mark (VmHWM), sampled
until the server stops.  ``--load N`` adds N REST clients polling the dashboard's
listings during the run (the "under load" figure); their latencies are printed too.

Every figure is printed with its goal and its ratio to a reference measured in the same
run: the time to read the calibrator MS's DATA column once (disk and CPU speed).

    .venv/bin/python benchmarks/bench_pipeline.py                  # full size (what `make bench` runs)
    .venv/bin/python benchmarks/bench_pipeline.py --preset small   # quick check, < 3 min
    .venv/bin/python benchmarks/bench_pipeline.py --load 8         # with REST clients beside the engine
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CADENCE_S = 309.0
OLD_CHAIN_S = 1070.0          # the old chain per group on this machine kind (convert 92, CASA cal 774, WSClean 206)
GOAL_E2E_S = 60.0             # per target group, files to photometry
GOAL_REALTIME = 5.0           # x real time
STAGE_GOALS_S = {"convert": 12.0, "solve": 10.0, "calibrate": 3.0, "image": 45.0, "measure": None}
STAGE_ORDER = ("convert", "solve", "calibrate", "image", "measure")
ENDPOINTS = ("/api/v1/images", "/api/v1/sources", "/api/v1/jobs", "/api/v1/health/system", "/api/health", "/metrics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulate_groups(sim_dir: Path, preset: str, n_targets: int, target_offset_h: float) -> tuple[list, list]:
    """(calibrator groups, target groups), reusing a previous simulation in sim_dir."""
    from engine.simulator import default_start, simulate

    def one(sub: str, **kw):
        d = sim_dir / sub
        stamp = d / "groups.json"
        if stamp.exists():
            return [[Path(p) for p in g] for g in json.loads(stamp.read_text())]
        shutil.rmtree(d, ignore_errors=True)
        sims = simulate(d, preset=preset, **kw)
        groups = [sorted(str(f) for f in g.files) for g in sims]
        stamp.write_text(json.dumps(groups))
        return [[Path(p) for p in g] for g in groups]

    cal = one("cal", groups=1, seed=11)
    tgt = one("targets", groups=n_targets, seed=12,
              start=default_start() + timedelta(hours=target_offset_h))
    return cal, tgt


def deliver(files: list[Path], incoming: Path) -> datetime:
    """Copy a group's files the way the correlator writes them; returns when the last landed (UTC)."""
    for f in files:
        tmp = incoming / ("." + f.name)   # hidden while copying: ingest skips dot files
        shutil.copyfile(f, tmp)
        tmp.rename(incoming / f.name)
    return datetime.now(UTC)


def parse_ts(v: str | None) -> datetime | None:
    if v is None:
        return None
    d = datetime.fromisoformat(v)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


class DB:
    """Read-only view of the engine's SQLite file (the benchmark never writes to it)."""

    def __init__(self, path: Path):
        self.path = path

    def query(self, sql: str, args=()) -> list[sqlite3.Row]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def group_states(self) -> dict[str, str]:
        try:
            return {r["id"]: r["state"] for r in self.query("SELECT id, state FROM observation_groups")}
        except sqlite3.OperationalError:   # not created yet
            return {}


class RssSampler(threading.Thread):
    """Peak RSS (VmHWM) of the server and each of its worker processes, by pid."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    @staticmethod
    def hwm(pid: int) -> int | None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def sample(self) -> None:
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except Exception:  # noqa: BLE001 - the server is gone
            return
        for p in procs:
            v = self.hwm(p.pid)
            if v is not None:
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), v)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()


class RestLoad(threading.Thread):
    """One dashboard-like client: GETs the listings back to back on one keep-alive connection."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.stop_ev = port, stop
        self.lat: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
        self.errors = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while not self.stop_ev.is_set():
            ep = ENDPOINTS[i % len(ENDPOINTS)]
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", ep, headers={"Accept-Encoding": "gzip"})
                r = conn.getresponse()
                r.read()
                if r.status >= 500:
                    self.errors += 1
                self.lat[ep].append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.2)
        conn.close()


def wait_health(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"contimg serve exited early with code {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/api/health")
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("contimg serve did not answer /api/health")


def read_reference(ms: str) -> float:
    """Seconds to read DATA of one MS once (the run's disk/CPU reference)."""
    from casacore.tables import table

    t0 = time.perf_counter()
    with table(ms, ack=False) as t:
        t.getcol("DATA")
    return time.perf_counter() - t0


def fmt(x: float | None, ref: float, goal: float | None = None) -> str:
    if x is None:
        return f"{'-':>8s} {'':>8s} {'':>6s}"
    g = "" if goal is None else ("ok" if x <= goal else "OVER")
    return f"{x:8.1f} {x / ref:8.1f} {g:>6s}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="full", choices=["tiny", "small", "full"])
    ap.add_argument("--targets", type=int, default=3, help="target groups after the calibrator (default 3)")
    ap.add_argument("--interval", type=float, default=None,
                    help="seconds between target deliveries (default: cadence/5 = 61.8 s for full, 15 s otherwise; "
                         "0 delivers them all at once)")
    ap.add_argument("--load", type=int, default=0, help="REST clients polling listings during the run")
    ap.add_argument("--workers", type=int, default=None, help="engine.workers (default: the engine's, = cores)")
    ap.add_argument("--sim-dir", default=None, help="keep/reuse the simulated files here")
    ap.add_argument("--keep", default=None, help="keep the data dir here")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--target-offset-h", type=float, default=1.0,
                    help="sky time of the first target after the calibrator transit (h)")
    a = ap.parse_args(argv)
    interval = a.interval if a.interval is not None else (CADENCE_S / GOAL_REALTIME if a.preset == "full" else 15.0)

    tmp = Path(tempfile.mkdtemp(prefix="bench_pipe_"))
    sim_dir = Path(a.sim_dir) if a.sim_dir else tmp / "sim"
    data = Path(a.keep) if a.keep else tmp / "data"
    if data.exists():
        shutil.rmtree(data)
    (data / "incoming").mkdir(parents=True)
    proc = None
    sampler = None
    loaders: list[RestLoad] = []
    stop_load = threading.Event()
    try:
        t0 = time.perf_counter()
        cal_groups, tgt_groups = simulate_groups(sim_dir, a.preset, a.targets, a.target_offset_h)
        print(f"setup (simulate, not timed): {time.perf_counter() - t0:.0f} s; preset {a.preset}, "
              f"{len(cal_groups)} calibrator + {len(tgt_groups)} target groups of {len(cal_groups[0])} files "
              f"({sum(f.stat().st_size for f in cal_groups[0]) / 1e9:.2f} GB each)")

        port = free_port()
        # the ingest polls every second and takes a file as complete after 1 s unchanged (defaults 5 s
        # and 10 s would add up to 15 s of waiting to every group); everything else is the default
        cfg = ["[ingest]", "stable_s = 1.0", "poll_interval_s = 1.0"]
        if a.workers:
            cfg += ["[engine]", f"workers = {a.workers}"]
        if a.preset != "full":   # a quick check: the demo's small field instead of the 3.5 deg default
            cfg += ["[imaging.params]", "fov_deg = 0.6", "niter = 300"]
        (tmp / "config.toml").write_text("\n".join(cfg) + "\n")
        print("configuration: " + "; ".join(cfg))
        log = open(tmp / "serve.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "contimg_console.cli", "--data-dir", str(data),
                                 "--config", str(tmp / "config.toml"),
                                 "serve", "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_health(port, proc)
        sampler = RssSampler(proc.pid)
        sampler.start()
        for _ in range(a.load):
            loaders.append(RestLoad(port, stop_load))
            loaders[-1].start()
        db = DB(data / "pipeline.sqlite3")

        arrivals: dict[int, datetime] = {}
        t_start = time.monotonic()
        deadline = t_start + a.timeout
        arrivals[0] = deliver(cal_groups[0], data / "incoming")
        plan = [(1 + i, t_start + (i + 1) * interval) for i in range(len(tgt_groups))]
        while True:
            now = time.monotonic()
            while plan and plan[0][1] <= now:
                k, _ = plan.pop(0)
                arrivals[k] = deliver(tgt_groups[k - 1], data / "incoming")
            states = db.group_states()
            if not plan and len(states) == 1 + len(tgt_groups) and all(
                    s in ("complete", "failed") for s in states.values()):
                break
            if now > deadline:
                print(f"TIMEOUT after {a.timeout:.0f} s; group states: {states}")
                break
            if proc.poll() is not None:
                print(f"contimg serve exited with code {proc.returncode}; see {tmp / 'serve.log'}")
                break
            time.sleep(0.25)
        wall = time.monotonic() - t_start
        stop_load.set()
        for th in loaders:
            th.join(timeout=35)
        sampler.sample()
        load_avg = os.getloadavg()[0]

        jobs = db.query("SELECT type, group_id, state, attempts, created_at, started_at, finished_at, outcome, error "
                        "FROM jobs WHERE group_id IS NOT NULL ORDER BY created_at")
        groups = {r["id"]: dict(r) for r in db.query("SELECT id, state, is_calibrator, calibrator_name, error, "
                                                       "group_time FROM observation_groups ORDER BY group_time")}
        ms_cal = db.query("SELECT m.path FROM measurement_sets m JOIN observation_groups g ON g.id = m.group_id "
                          "WHERE g.is_calibrator = 1 LIMIT 1")
    finally:
        stop_load.set()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if sampler is not None:
            sampler.stop.set()

    ref = read_reference(ms_cal[0]["path"]) if ms_cal else float("nan")
    # group ids are the sky start times; map them to the delivery order
    order = sorted(groups)
    by_group: dict[str, dict[str, dict]] = {g: {} for g in order}
    for j in jobs:
        by_group.setdefault(j["group_id"], {})[j["type"]] = dict(j)

    print(f"\nreference: reading DATA of the calibrator MS once = {ref:.2f} s (figures below also as x ref)")
    print(f"delivery: calibrator at t=0, then a target every {interval:.1f} s; REST clients: {a.load}; "
          f"wall {wall:.0f} s; load average at end {load_avg:.1f} on {os.cpu_count()} cores")
    print(f"\n{'group':20s} {'kind':6s} {'stage':9s} {'wait s':>7s} {'run s':>8s} {'x ref':>8s} {'goal':>6s}  "
          "(wait: queued -> started; run: started -> finished, from the job table)")
    e2e: dict[str, float] = {}
    stage_runs: dict[str, list[float]] = {s: [] for s in STAGE_ORDER}
    cal_images: list[tuple[float, dict]] = []   # a calibrator group's image: a bright source, deconvolved deeper
    for idx, gid in enumerate(order):
        g = groups[gid]
        kind = "cal" if g["is_calibrator"] else "target"
        arrival = arrivals.get(idx)
        last_end = None
        for st in STAGE_ORDER:
            j = by_group[gid].get(st)
            if j is None:
                continue
            c, s, f = parse_ts(j["created_at"]), parse_ts(j["started_at"]), parse_ts(j["finished_at"])
            run = (f - s).total_seconds() if s and f else None
            wait = (s - c).total_seconds() if s and c else None
            if run is not None and j["state"] == "succeeded":
                if st == "image" and kind == "cal":
                    cal_images.append((run, json.loads(j["outcome"] or "{}") or {}))
                else:
                    stage_runs[st].append(run)
            goal = STAGE_GOALS_S.get(st)
            gtxt = f"{goal:.0f}" if goal else ""
            note = "" if j["state"] == "succeeded" else f"  {j['state']}: {(j['error'] or '')[:80]}"
            print(f"{gid:20s} {kind:6s} {st:9s} {wait if wait is not None else float('nan'):7.1f} "
                  f"{fmt(run, ref, goal)} {gtxt:>4s}{note}")
            last_end = f or last_end
        if g["state"] == "complete" and arrival and last_end:
            e2e[gid] = (last_end - arrival).total_seconds()
            print(f"{gid:20s} {kind:6s} {'END2END':9s} {'':7s} {fmt(e2e[gid], ref, GOAL_E2E_S if kind == 'target' else None)}"
                  f"  delivery -> photometry")
        elif g["state"] != "complete":
            print(f"{gid:20s} {kind:6s} group {g['state']}: {(g['error'] or '')[:120]}")
        sol = by_group[gid].get("solve")
        if sol and sol["outcome"]:
            t = (json.loads(sol["outcome"]) or {}).get("timings_s") or {}
            if t:
                print(f"{'':27s} solve steps: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))

    print("\nsummary (goal, figure, ratio)")
    for st in STAGE_ORDER:
        v = stage_runs[st]
        if v:
            goal = STAGE_GOALS_S.get(st)
            gtxt = f"goal <= {goal:.0f} s: {'met' if max(v) <= goal else 'NOT met'}" if goal else "no goal"
            if st == "calibrate":
                gtxt += (" (the goal is the apply's; the stage also RFI-flags the target, "
                         "calibration.flag_targets: bench_calibration prints the apply alone)")
            label = "image (targets)" if st == "image" else st
            print(f"  {label:9s} run mean {statistics.mean(v):6.1f} s, max {max(v):6.1f} s "
                  f"(x ref {max(v) / ref:.1f}); {gtxt}")
        if st == "image":
            for run, out in cal_images:
                print(f"  image (calibrator group) {run:6.1f} s (x ref {run / ref:.1f}); the goal is the target image's: "
                      f"peak {out.get('peak_jy') or float('nan'):.2f} Jy, {out.get('n_iter', '?')} components in "
                      f"{out.get('n_major', '?')} major cycles ({out.get('stop_reason', '?')})")
    tg = [e2e[g] for g in order if not groups[g]["is_calibrator"] and g in e2e]
    n_tgt = sum(1 for g in order if not groups[g]["is_calibrator"])
    ok = False
    if tg:
        worst = max(tg)
        ok = worst <= GOAL_E2E_S and len(tg) == n_tgt == a.targets
        print(f"  target end to end: mean {statistics.mean(tg):.1f} s, max {worst:.1f} s (x ref {worst / ref:.1f}); "
              f"goal <= {GOAL_E2E_S:.0f} s: {'met' if worst <= GOAL_E2E_S else 'NOT met'}")
        print(f"  real-time factor (cadence {CADENCE_S:.0f} s / worst end to end): x{CADENCE_S / worst:.1f}; "
              f"goal >= x{GOAL_REALTIME:.0f}: {'met' if CADENCE_S / worst >= GOAL_REALTIME else 'NOT met'}")
        print(f"  old chain {OLD_CHAIN_S:.0f} s per group -> speed-up x{OLD_CHAIN_S / worst:.1f}")
        tgt_ids = [g for g in order if not groups[g]["is_calibrator"] and g in e2e]
        first = min(arrivals[order.index(g)] for g in tgt_ids)
        last = max(parse_ts(by_group[g]["measure"]["finished_at"]) for g in tgt_ids)
        per = (last - first).total_seconds() / len(tgt_ids)
        print(f"  throughput: {len(tgt_ids)} target groups in {(last - first).total_seconds():.0f} s from the first "
              f"delivery = {per:.1f} s per group = x{CADENCE_S / per:.1f} real time (the deliveries alone span "
              f"{(len(tgt_ids) - 1) * interval:.0f} s)")
    if n_tgt != a.targets:
        print(f"  NOTE: {n_tgt} of the {len(order)} groups were classified as targets (expected {a.targets}); "
              "try another --target-offset-h")
    if sampler is not None and sampler.peaks:
        server = sampler.peaks.pop(proc.pid, None) if proc else None
        workers = sorted(sampler.peaks.items(), key=lambda kv: -kv[1])
        print("  peak RSS (VmHWM): server " + (f"{server / 2**30:.2f} GB" if server else "-") + "; workers "
              + ", ".join(f"pid {p} {v / 2**30:.2f} GB" for p, v in workers)
              + " (the solve's goal: <= 2 GB per full-size solve)")
    if loaders:
        print(f"  REST under load ({a.load} clients, keep-alive, gzip), latency while the engine ran:")
        for ep in ENDPOINTS:
            v = sorted(x for th in loaders for x in th.lat[ep])
            if v:
                p = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1e3  # noqa: E731
                print(f"    {ep:18s} n={len(v):6d} p50 {p(0.5):7.1f} ms  p99 {p(0.99):7.1f} ms")
        print(f"    errors (5xx or connection): {sum(th.errors for th in loaders)}")
    print(f"\nRESULT: {'all target groups within' if ok else 'NOT all target groups within'} "
          f"{GOAL_E2E_S:.0f} s end to end")
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif a.sim_dir is None:
        print(f"kept in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
