"""Online backup of a 1 GB pipeline database while writers run.

Goals (issue 14): backup throughput ≥ 0.5 × a plain file copy of the same database measured in
the same run, and the longest writer stall (one insert + commit) during the backup ≤ 200 ms.
Two writer threads insert and commit rows in WAL mode, as the engine does, for the whole backup.
Figures: the copy alone (SQLite's online backup API, ``copy_database``) and the whole
``run_backup`` (copy, integrity check of the copy, hashing, manifest), each as a ratio to the
plain copy. ``BENCH_BACKUP_MB`` changes the size (default 1024).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import backups as bk  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.settings import load_settings  # noqa: E402

SIZE_MB = int(os.environ.get("BENCH_BACKUP_MB", "1024"))
ROW = 64 * 1024


def build(path: Path) -> None:
    db = Database(path)
    db.upgrade()
    db.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, payload BLOB)")
    pool = [os.urandom(ROW) for _ in range(16)]
    rows = SIZE_MB * (1 << 20) // ROW
    for start in range(0, rows, 1000):
        conn.executemany("INSERT INTO bulk (payload) VALUES (?)",
                         ((pool[i % 16],) for i in range(start, min(rows, start + 1000))))
        conn.commit()
    conn.execute("CREATE TABLE soak (id INTEGER PRIMARY KEY, writer INTEGER, payload BLOB)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


class Writers:
    """Threads inserting one row per transaction; each records its longest insert + commit."""

    def __init__(self, path: Path, n: int = 2) -> None:
        self.path, self.n = path, n
        self.stop = threading.Event()
        self.latencies: list[list[float]] = [[] for _ in range(n)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # as the engine's connections
        payload = os.urandom(512)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            conn.execute("INSERT INTO soak (writer, payload) VALUES (?, ?)", (i, payload))
            conn.commit()
            self.latencies[i].append(time.perf_counter() - t0)
            time.sleep(0.002)
        conn.close()

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        time.sleep(0.2)
        self.latencies = [[] for _ in range(self.n)]  # only what happens during the measurement
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    @property
    def worst_ms(self) -> float:
        return max((max(x) for x in self.latencies if x), default=0.0) * 1000

    @property
    def commits(self) -> int:
        return sum(len(x) for x in self.latencies)


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        settings = load_settings(None, {"data_dir": Path(tmp) / "data", "jupyter": {"mode": "off"}})
        settings.ensure_dirs()
        live = settings.db_path
        t0 = time.perf_counter()
        build(live)
        size = live.stat().st_size
        print(f"built a {size / 1e9:.2f} GB database in {time.perf_counter() - t0:.1f} s")

        shutil.copyfile(live, Path(tmp) / "warm.copy")  # same cache state for every measurement
        os.unlink(Path(tmp) / "warm.copy")
        t0 = time.perf_counter()
        shutil.copyfile(live, Path(tmp) / "plain.copy")
        plain_s = time.perf_counter() - t0
        os.unlink(Path(tmp) / "plain.copy")
        plain = size / plain_s
        print(f"reference: plain file copy {plain / 1e6:.0f} MB/s ({plain_s:.2f} s)")

        with Writers(live) as w:
            t0 = time.perf_counter()
            bk.copy_database(live, Path(tmp) / "online.copy")
            copy_s = time.perf_counter() - t0
        os.unlink(Path(tmp) / "online.copy")
        copy_rate = size / copy_s
        print(f"online copy (read snapshot + file copy, copy_database) with writers: {copy_rate / 1e6:.0f} MB/s ({copy_s:.2f} s); "
              f"goal ≥ 0.5 × plain; ratio {copy_rate / plain:.2f}")
        print(f"  longest writer stall {w.worst_ms:.1f} ms over {w.commits} commits; goal ≤ 200 ms; "
              f"ratio {w.worst_ms / 200:.2f}")

        db = Database(live)
        with Writers(live) as w:
            bid = bk.create_backup(settings, db, name="bench", scope={}, created_by="bench", kind="database")
            t0 = time.perf_counter()
            bk.run_backup(settings, db, bid)
            full_s = time.perf_counter() - t0
        row = bk.get_backup(db, bid)
        db.dispose()
        assert row is not None and row["status"] == "completed", row
        full_rate = size / full_s
        print(f"run_backup (copy + integrity check + hashes + manifest) with writers: {full_rate / 1e6:.0f} MB/s "
              f"({full_s:.2f} s); goal ≥ 0.5 × plain; ratio {full_rate / plain:.2f}")
        print(f"  longest writer stall {w.worst_ms:.1f} ms over {w.commits} commits; goal ≤ 200 ms; "
              f"ratio {w.worst_ms / 200:.2f}")


if __name__ == "__main__":
    main()
