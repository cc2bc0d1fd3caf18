"""Fetch the VLA NGC5921 tutorial observation once, for the real-data tests.

The file ships inside the ``casadata`` wheel on PyPI (member
``casadata/__data__/demo/NGC5921.fits``, 35 MB of the 349 MB wheel).  The wheel is
downloaded with pip into a temporary folder, the one member is extracted to
``.testdata/NGC5921.fits`` beside the repository's README, and the wheel is deleted.
Tests never download: they skip with this script's name when the file is missing.
Run by ``make testdata`` (``make test`` and ``.ci/run`` call it).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEST = REPO / ".testdata" / "NGC5921.fits"
WHEEL = "casadata==2025.9.22"
MEMBER = "casadata/__data__/demo/NGC5921.fits"
SIZE = 35_098_560


def main() -> int:
    if DEST.is_file() and DEST.stat().st_size == SIZE:
        return 0
    DEST.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"fetch_ngc5921: pip download {WHEEL} failed: {r.stderr.strip()[-300:]}", file=sys.stderr)
            return 1
        wheel = next(Path(tmp).glob("casadata-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            part = DEST.with_suffix(".part")
            with z.open(MEMBER) as src, open(part, "wb") as dst:
                h = hashlib.sha256()
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
    if part.stat().st_size != SIZE:
        print(f"fetch_ngc5921: {MEMBER} has {part.stat().st_size} bytes, expected {SIZE}", file=sys.stderr)
        part.unlink()
        return 1
    part.rename(DEST)
    print(f"fetch_ngc5921: {DEST} (sha256 {h.hexdigest()[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
