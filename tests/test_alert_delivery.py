"""Alerts reach a person: a fired alert is POSTed to a loopback webhook and mailed to a loopback
SMTP server (aiosmtpd); retries, permanent refusals, silences, de-duplication and the record of
every delivery; the built-in catalogue's policies fire through the same evaluator."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from engine_helpers import seed_groups

from engine.alerting import AlertPolicies, Evaluator, ensure_builtin_policies
from engine.alerts.catalog import BUILTIN
from engine.alerts.delivery import Notifier, deliveries
from engine.db import models as m
from engine.settings import AlertSettings

POLICY = {"name": "queue backing up", "description": "", "severity": "critical", "channels": ["webhook", "email"],
          "enabled": True, "rules": [{"metric": "contimg_queue_depth", "operator": ">", "threshold": 1}]}


class Inbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp():
    import socket

    with socket.socket() as sock:  # aiosmtpd's start-up self-check needs a concrete port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, inbox
    finally:
        ctl.stop()


class Hook:
    """A real HTTP receiver on loopback in its own thread; answers the statuses it is told to, in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[Any] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _serve(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.bodies.append(json.loads(await request.read()))
            status = self.statuses.pop(0) if self.statuses else 200
            return web.Response(status=status, text="ok")

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/hook", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def hook():
    made: list[Hook] = []

    def factory(statuses: list[int] | None = None) -> Hook:
        made.append(Hook(list(statuses or [])))
        return made[-1]

    yield factory
    for h in made:
        h.close()


def _queue(db, n: int = 3) -> None:
    seed_groups(db, n)
    with db.session() as s:
        for g in s.query(m.ObservationGroup).all():
            s.add(m.Job(type="convert", group_id=g.id, state="queued"))


def _notifier(db, **cfg: Any) -> Notifier:
    return Notifier(AlertSettings(retry_wait_s=0, **cfg), db)


def test_a_fired_alert_reaches_the_webhook_and_the_smtp_server(db, settings, hook, smtp) -> None:
    port, inbox = smtp
    receiver = hook()
    _queue(db)
    pid = AlertPolicies(db).save(POLICY, "op")["id"]
    ev = Evaluator(db, settings.data_dir, notifier=_notifier(
        db, webhook_url=receiver.url, smtp_host="127.0.0.1", smtp_port=port, email_to=["night@obs.example"]))
    now = datetime.now(UTC)
    assert ev.run(now) == [pid]
    body = receiver.bodies[0]
    assert body["status"] == "firing" and body["alert"]["policy"] == "queue backing up"
    assert body["alert"]["severity"] == "critical" and "contimg_queue_depth = 3 > 1" in body["alert"]["message"]
    rcpt, mail = inbox.messages[0]
    assert rcpt == ["night@obs.example"] and mail["Subject"] == "[contimg critical] queue backing up"
    assert "contimg_queue_depth = 3 > 1" in mail.get_payload()
    rows = deliveries(db)
    assert {(d["channel"], d["outcome"], d["attempts"]) for d in rows} == {("webhook", "delivered", 1),
                                                                           ("email", "delivered", 1)}
    with db.session() as s:
        alert = s.query(m.Alert).one()
        assert alert.details["delivered"] is True and alert.details["deliveries"] == {"webhook": "delivered",
                                                                                     "email": "delivered"}
    # de-duplicated: the same condition a minute later tells nobody again
    assert ev.run(now + timedelta(minutes=1)) == [] and len(receiver.bodies) == 1 and len(inbox.messages) == 1
    # silenced: past the repeat interval, but an operator said quiet
    AlertPolicies(db).silence(pid, "maintenance", now, now + timedelta(hours=3), "op")
    assert ev.run(now + timedelta(hours=2)) == [] and len(receiver.bodies) == 1
    assert ev.run(now + timedelta(hours=4)) == [pid] and len(receiver.bodies) == 2 and len(inbox.messages) == 2


def test_transient_webhook_failures_are_retried_and_counted(db, settings, hook) -> None:
    receiver = hook([503, 502])
    _queue(db)
    AlertPolicies(db).save({**POLICY, "channels": ["webhook"]}, "op")
    Evaluator(db, settings.data_dir, notifier=_notifier(db, webhook_url=receiver.url)).run()
    assert len(receiver.bodies) == 3
    [d] = deliveries(db)
    assert d["outcome"] == "delivered" and d["attempts"] == 3


def test_a_permanent_refusal_is_not_retried_and_is_recorded_failed(db, settings, hook) -> None:
    receiver = hook([404])
    _queue(db)
    AlertPolicies(db).save({**POLICY, "channels": ["webhook"]}, "op")
    Evaluator(db, settings.data_dir, notifier=_notifier(db, webhook_url=receiver.url)).run()
    [d] = deliveries(db)
    assert len(receiver.bodies) == 1 and d["outcome"] == "failed" and d["attempts"] == 1 and "HTTP 404" in d["error"]


def test_an_unreachable_receiver_fails_after_every_attempt(db, settings) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    _queue(db)
    AlertPolicies(db).save(POLICY, "op")
    Evaluator(db, settings.data_dir, notifier=_notifier(
        db, attempts=3, webhook_url=f"http://127.0.0.1:{dead}/x", smtp_host="127.0.0.1", smtp_port=dead,
        email_to=["a@b"])).run()
    rows = {d["channel"]: d for d in deliveries(db)}
    assert rows["webhook"]["outcome"] == "failed" and rows["webhook"]["attempts"] == 3
    assert "refused" in rows["webhook"]["error"].lower()
    assert rows["email"]["outcome"] == "failed" and rows["email"]["attempts"] == 3
    with db.session() as s:
        assert s.query(m.Alert).one().details["delivered"] is False  # the alert itself is kept


def test_a_channel_without_an_address_is_recorded_skipped(db, settings) -> None:
    _queue(db)
    AlertPolicies(db).save({**POLICY, "channels": ["email", "slack"]}, "op")
    Evaluator(db, settings.data_dir, notifier=_notifier(db)).run()
    rows = {d["channel"]: d for d in deliveries(db)}
    assert rows["email"]["outcome"] == "skipped" and "smtp_host" in rows["email"]["error"]
    assert rows["slack"]["outcome"] == "skipped" and "slack_webhook_url" in rows["slack"]["error"]


def test_bad_alert_addresses_are_config_errors_naming_the_key(tmp_path) -> None:
    from conftest import make_settings

    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="webhook_url"):
        make_settings(tmp_path, alerts={"webhook_url": "ftp://example/x"})
    with pytest.raises(ConfigError, match="smtp_port"):
        make_settings(tmp_path, alerts={"smtp_port": 0})


def test_builtin_catalogue_policies_fire_through_the_evaluator(db, settings, hook) -> None:
    receiver = hook()
    added = ensure_builtin_policies(db)
    assert set(added) == {a.policy_id for a in BUILTIN if a.metric is not None}
    assert ensure_builtin_policies(db) == []  # idempotent; operator edits survive restarts
    ev = Evaluator(db, settings.data_dir, notifier=_notifier(db, webhook_url=receiver.url),
                   extra_samples=lambda: [("contimg_http_p95_seconds", {}, 3.5)])
    now = datetime.now(UTC)
    assert ev.run(now) == []  # every built-in alert holds for minutes before it fires
    fired = set(ev.run(now + timedelta(hours=1)))
    # a fresh data dir: no calibration, no database backup ever, the REST server slow
    assert fired == {"builtin-stale-calibration", "builtin-backup-stale", "builtin-api-slow"}
    assert {b["alert"]["policy"] for b in receiver.bodies} == {"StaleCalibration", "BackupStale", "ApiSlow"}
    assert all(b["alert"]["runbook"].startswith("docs/runbook.md#") for b in receiver.bodies)


def test_health_samples_failure_ratio_and_stall(db, settings) -> None:
    from engine.alerting import pipeline_health_samples

    now = datetime.now(UTC)
    seed_groups(db, 1)
    with db.session() as s:
        gid = s.query(m.ObservationGroup.id).scalar()
        for state in ("failed", "succeeded", "succeeded", "succeeded"):
            s.add(m.Job(type="image", group_id=gid, state=state, finished_at=now - timedelta(minutes=5)))
        s.add(m.Job(type="convert", group_id=gid, state="queued", created_at=now - timedelta(hours=3),
                    run_after=now - timedelta(hours=3)))
    got = {(n, tuple(sorted(lbl.items()))): v for n, lbl, v in pipeline_health_samples(db, now)}
    assert got[("contimg_job_failure_ratio_1h", (("type", "image"),))] == 0.25
    assert got[("contimg_processing_stalled_seconds", ())] == pytest.approx(300, abs=1)
    assert got[("contimg_backup_age_seconds", (("type", "database"),))] == float("inf")
