"""Stage functions and registries for engine tests (run in the engine's process pool).

They write their product the way real stages must: to a temporary path, renamed
into place only when complete, so a kill mid-write never leaves a product that
looks done.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any

from engine.db import models as m
from engine.errors import PermanentStageError, TransientStageError
from engine.processing import states
from engine.processing.stages import Stage, StageRegistry

PAYLOAD = 64 * 1024


def write_product(out: Path, seed: str, delay: float = 0.0) -> str:
    """Write a product with a trailing checksum; tmp + rename so a partial file is never final."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    body = hashlib.sha256(seed.encode()).digest() * (PAYLOAD // 32)
    with tmp.open("wb") as fh:
        fh.write(body[: PAYLOAD // 2])
        fh.flush()
        if delay:
            time.sleep(delay)
        fh.write(body[PAYLOAD // 2:])
        fh.write(hashlib.sha256(body).hexdigest().encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return str(out)


def product_ok(path: Path) -> bool:
    data = path.read_bytes()
    body, digest = data[:-64], data[-64:]
    return len(body) == PAYLOAD and hashlib.sha256(body).hexdigest().encode() == digest


def ok_stage(params: dict[str, Any]) -> dict[str, Any]:
    path = write_product(Path(params["out"]), params["group_id"], float(params.get("delay", 0.0)))
    return {"product": path}


def nice_stage(params: dict[str, Any]) -> dict[str, Any]:
    """ok_stage, reporting the niceness of the worker process that ran it."""
    return {**ok_stage(params), "nice": os.nice(0)}


def flaky_stage(params: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(f"{params['group_id']}:{params['stage']}:{params['_attempt']}")
    if rng.random() < float(params.get("p_fail", 0.3)):
        raise TransientStageError(f"simulated I/O hiccup on {params['group_id']}")
    return ok_stage(params)


def permanent_stage(params: dict[str, Any]) -> dict[str, Any]:
    raise PermanentStageError(f"corrupt input for {params['group_id']}: header checksum mismatch")


def sleepy_stage(params: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(params.get("sleep", 5)))
    return ok_stage(params)


def killer_stage(params: dict[str, Any]) -> dict[str, Any]:
    """Kills its own worker process (as a segfault or the OOM killer would) for the poison group."""
    if params["group_id"] == params.get("poison"):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return ok_stage(params)


def _prepare(stage_name: str, extra: dict[str, Any]):  # type: ignore[no-untyped-def]
    def prepare(s: Any, group: m.ObservationGroup, settings: Any) -> dict[str, Any]:
        out = settings.data_dir / "products" / f"{group.id}.{stage_name}"
        return {"group_id": group.id, "stage": stage_name, "out": str(out), **extra}
    return prepare


def _record(stage_name: str):  # type: ignore[no-untyped-def]
    def record(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any) -> None:
        assert Path(outcome["product"]).exists()
    return record


CHAIN = (
    ("convert", states.PENDING, states.CONVERTING, states.CONVERTED),
    ("calibrate", states.CONVERTED, states.CALIBRATING, states.CALIBRATED),
    ("image", states.CALIBRATED, states.IMAGING, states.IMAGED),
    ("measure", states.IMAGED, states.MEASURING, states.COMPLETE),
)


def registry_of(func: str, stages: int = 4, **extra: Any) -> StageRegistry:
    reg = StageRegistry()
    for name, start, working, done in CHAIN[:stages]:
        reg.register(Stage(name, start, working, done, f"stagefuncs:{func}", _prepare(name, extra), _record(name)))
    return reg


def crash_registry() -> StageRegistry:
    """Used by the crash test through ``engine.registry = "stagefuncs:crash_registry"``."""
    return registry_of("ok_stage", delay=0.4)


def failing_registry() -> StageRegistry:
    """Conversion fails permanently: for tests of the dead-letter views."""
    return registry_of("permanent_stage", stages=1)


def gated_registry(deadline_s: float = 3600.0) -> StageRegistry:
    """convert, then a calibrate stage that waits until the kv key 'test.calibrated' exists."""
    from datetime import UTC, datetime, timedelta

    from engine.processing.stages import Wait

    def gate(s: Any, group: m.ObservationGroup, settings: Any) -> Wait | None:
        if s.get(m.KeyValue, "test.calibrated") is not None:
            return None
        return Wait("no calibration set yet", datetime.now(UTC) + timedelta(seconds=deadline_s)
                    if group.wait_deadline is None else group.wait_deadline, recheck_s=3600)

    reg = StageRegistry()
    name, start, working, done = CHAIN[0]
    reg.register(Stage(name, start, working, done, "stagefuncs:ok_stage", _prepare(name, {}), _record(name)))
    name, start, working, done = CHAIN[1]
    reg.register(Stage(name, start, working, done, "stagefuncs:ok_stage", _prepare(name, {}), _record(name),
                       also_from=(states.WAITING,), gate=gate))
    return reg
