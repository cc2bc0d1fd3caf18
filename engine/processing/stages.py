"""What a stage is, and the registry of the real ones.

A stage moves a group from one resting state to the next through a working
state. Its ``run`` is a top-level function (dotted path) executed in the process
pool with plain-dict params; ``prepare`` and ``record`` run in the engine's DB
thread, inside the transactions that change the group's state, so a product is
recorded in the same commit that marks the stage done.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine.db import models as m
from engine.processing import joblog

Prepare = Callable[[Session, m.ObservationGroup, Any], dict[str, Any]]
# A record hook may return events (type, data) to publish once its transaction has committed.
Record = Callable[[Session, m.ObservationGroup, dict[str, Any], Any], "list[tuple[str, dict[str, Any]]] | None"]


@dataclass(frozen=True)
class Wait:
    """A gate's verdict: not yet — check again later, fail after ``deadline``."""

    reason: str
    deadline: datetime | None
    recheck_s: float


Gate = Callable[[Session, m.ObservationGroup, Any], Wait | None]
OnFailure = Callable[[Session, m.ObservationGroup, BaseException, Any], None]


@dataclass(frozen=True)
class Stage:
    job_type: str
    start: str
    working: str
    done: str
    run: str  # "package.module:function", executed in a worker process
    prepare: Prepare
    record: Record
    max_attempts: int | None = None
    applies: Callable[[m.ObservationGroup], bool] = field(default=lambda g: True)
    also_from: tuple[str, ...] = ()  # further resting states the stage may start from (waiting)
    gate: Gate | None = None  # may hold the group back (e.g. no calibration yet) before it starts
    on_failure: OnFailure | None = None  # records what a failure leaves behind (e.g. a rejected set)


class StageRegistry:
    def __init__(self) -> None:
        self._stages: dict[str, Stage] = {}

    def register(self, stage: Stage) -> None:
        self._stages[stage.job_type] = stage

    def get(self, job_type: str) -> Stage | None:
        return self._stages.get(job_type)

    def types(self) -> list[str]:
        return list(self._stages)

    def next_for(self, group: m.ObservationGroup, state: str) -> Stage | None:
        """The stage that starts from ``state`` for this group, if one is installed."""
        for stage in self._stages.values():
            if (stage.start == state or state in stage.also_from) and stage.applies(group):
                return stage
        return None


def resolve(path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def run_in_worker(path: str, params: dict[str, Any]) -> dict[str, Any]:
    """Entry point in the pool process: capture the job's log, run the stage, return its outcome."""
    # _db_url: the database's URL (SQLite or PostgreSQL); _db_path: a SQLite file (older engines)
    with joblog.capture(params.get("_db_url") or params.get("_db_path"), params.get("_job_id")) as logger:
        joblog.mark_worker()  # which process runs the job: if the pool breaks, the engine knows whose worker died
        logger.info("stage %s started (attempt %s)", path, params.get("_attempt"))
        outcome = resolve(path)(params)
        logger.info("stage %s finished", path)
        return outcome
