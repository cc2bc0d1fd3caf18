"""Delivering a fired alert: JSON webhook (and Slack's incoming webhook), e-mail over SMTP.

Sync on purpose: the evaluator runs in a worker thread (``asyncio.to_thread``), and the engine
speaks no aiohttp. Transient failures (connection refused, timeouts, HTTP 5xx/429, SMTP 4xx)
are retried by tenacity with doubling waits; permanent ones (HTTP 4xx, SMTP 5xx) are not.
Every channel of every alert leaves one ``alert_deliveries`` row: delivered, failed (with the
last error and the number of tries) or skipped (the channel has no address configured).
"""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from engine.db import Database
from engine.db import models as m
from engine.logs import get_logger
from engine.settings import AlertSettings

log = get_logger("alerts.delivery")


class PermanentDeliveryError(Exception):
    """The receiver refused the message for good (bad URL, rejected recipient): retrying cannot help."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, PermanentDeliveryError):
        return False
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, (OSError, smtplib.SMTPException, TimeoutError, socket.timeout))


@dataclass
class Outcome:
    channel: str
    target: str
    outcome: str
    attempts: int
    error: str | None = None


def alert_payload(alert: m.Alert, policy_name: str, hostname: str) -> dict[str, Any]:
    return {"source": "contimg", "host": hostname, "status": "firing", "alert": {
        "id": alert.id, "policy": policy_name, "policy_id": alert.policy_id, "severity": alert.severity,
        "message": alert.message, "triggered_at": alert.triggered_at.isoformat(),
        "labels": (alert.details or {}).get("labels", []), "runbook": (alert.details or {}).get("runbook", "")}}


class Notifier:
    def __init__(self, settings: AlertSettings, db: Database) -> None:
        self.cfg = settings
        self.db = db
        self.hostname = socket.gethostname()

    def _retrying(self) -> Retrying:
        return Retrying(stop=stop_after_attempt(self.cfg.attempts), reraise=True, retry=retry_if_exception(_transient),
                        wait=wait_exponential(multiplier=self.cfg.retry_wait_s, max=max(self.cfg.retry_wait_s, 1) * 30))

    def _run(self, channel: str, target: str, send: Any) -> Outcome:
        retrying = self._retrying()
        try:
            retrying(send)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
            tries = retrying.statistics.get("attempt_number", 1)
            log.warning("alert delivery by %s to %s failed after %d tries: %s", channel, target, tries, exc)
            return Outcome(channel, target, "failed", tries, f"{type(exc).__name__}: {exc}"[:2000])
        return Outcome(channel, target, "delivered", retrying.statistics.get("attempt_number", 1))

    # ---- channels ----------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "contimg-alerts"})
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.webhook_timeout_s) as resp:  # noqa: S310 - http(s) only
                resp.read()
        except urllib.error.HTTPError as exc:
            if not _transient(exc):
                raise PermanentDeliveryError(f"HTTP {exc.code} {exc.reason} from {url}") from exc
            raise

    def _mail(self, subject: str, text: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.cfg.email_from, ", ".join(self.cfg.email_to), subject
        msg.set_content(text)
        with smtplib.SMTP(self.cfg.smtp_host or "", self.cfg.smtp_port, timeout=self.cfg.webhook_timeout_s) as smtp:
            if self.cfg.smtp_starttls:
                smtp.starttls()
            if self.cfg.smtp_user:
                smtp.login(self.cfg.smtp_user, self.cfg.smtp_password or "")
            try:
                refused = smtp.send_message(msg)
            except smtplib.SMTPRecipientsRefused as exc:
                raise PermanentDeliveryError(f"every recipient refused: {exc.recipients}") from exc
            if refused:
                raise PermanentDeliveryError(f"recipients refused: {refused}")

    def deliver(self, alert: m.Alert, policy_name: str, channels: list[str]) -> list[Outcome]:
        """Send one alert on each of its policy's channels; record and return the outcomes."""
        payload = alert_payload(alert, policy_name, self.hostname)
        text = (f"[{alert.severity.upper()}] {policy_name} on {self.hostname}\n\n{alert.message}\n\n"
                f"fired at {alert.triggered_at:%Y-%m-%d %H:%M:%S} UTC (alert #{alert.id})\n"
                f"what to do: {payload['alert']['runbook'] or 'docs/runbook.md'}\n")
        out: list[Outcome] = []
        for channel in dict.fromkeys(channels):  # a channel named twice is one message
            if channel == "webhook":
                url = self.cfg.webhook_url
                out.append(self._run(channel, url, lambda u=url: self._post(u, payload)) if url else
                           Outcome(channel, "", "skipped", 0, "no [alerts] webhook_url configured"))
            elif channel == "slack":
                url = self.cfg.slack_webhook_url
                out.append(self._run(channel, url, lambda u=url: self._post(u, {"text": text})) if url else
                           Outcome(channel, "", "skipped", 0, "no [alerts] slack_webhook_url configured"))
            elif channel == "email":
                target = ", ".join(self.cfg.email_to)
                if not self.cfg.smtp_host or not self.cfg.email_to:
                    out.append(Outcome(channel, target, "skipped", 0,
                                       "no [alerts] smtp_host and email_to configured"))
                else:
                    subject = f"[contimg {alert.severity}] {policy_name}"
                    out.append(self._run(channel, f"smtp://{self.cfg.smtp_host}:{self.cfg.smtp_port} {target}",
                                         lambda: self._mail(subject, text)))
            else:
                out.append(Outcome(channel, "", "skipped", 0, f"unknown channel {channel!r}"))
        self._record(alert.id, out)
        return out

    def _record(self, alert_id: int, outcomes: list[Outcome]) -> None:
        now = datetime.now(UTC)
        with self.db.session() as s:
            for o in outcomes:
                s.add(m.AlertDelivery(alert_id=alert_id, channel=o.channel, target=o.target, outcome=o.outcome,
                                      attempts=o.attempts, error=o.error, finished_at=now))


def deliveries(db: Database, alert_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    from sqlalchemy import select

    with db.session() as s:
        q = select(m.AlertDelivery).order_by(m.AlertDelivery.id.desc()).limit(limit)
        if alert_id is not None:
            q = q.where(m.AlertDelivery.alert_id == alert_id)
        return [{"id": d.id, "alert_id": d.alert_id, "channel": d.channel, "target": d.target,
                 "outcome": d.outcome, "attempts": d.attempts, "error": d.error, "created_at": d.created_at,
                 "finished_at": d.finished_at} for d in s.scalars(q)]
