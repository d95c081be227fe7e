"""Webhook notifier: new and escalated alerts, POSTed as JSON to configured URLs.

The worker only writes a ``webhook_delivery`` row per URL in the same transaction as
the alert (an outbox), so the pipeline never waits on a receiver. ``Sender`` runs in
its own thread: it picks due deliveries (``FOR UPDATE SKIP LOCKED``, so several
senders never post the same row twice at once), posts each with a timeout, and on
failure retries with exponential backoff until ``max_attempts``, then marks the
delivery ``failed`` with the last error. A 2xx answer is success; 4xx other than
408/429 is final (the receiver refuses this body, retrying will not help).

Each request carries ``X-ClearDay-Event``, ``X-ClearDay-Delivery`` (the delivery id:
receivers dedupe on it, since a crash between posting and recording success sends a
delivery again) and ``X-ClearDay-Signature: t=<unix time>,sha256=<hex>``, the
HMAC-SHA256 of ``"<t>." + body`` under the receiver URL's secret: generated per URL
and stored (``webhook_endpoint``) unless one secret for all is configured. The time
lets receivers refuse replays (docs/api.md shows the check).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg

from fleet import db
from fleet.alerts import repo

if TYPE_CHECKING:
    from fleet.alerts.repo import RaisedAlert

log = logging.getLogger("clearday.alerts.webhook")

BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 600.0
POLL_INTERVAL_S = 1.0


def alert_payload(
    raised: RaisedAlert, *, case_id: int | None, event: str = "alert.raised"
) -> dict[str, Any]:
    """`event`: alert.raised, or alert.escalated (an incident moved on to a later stage)."""
    c = raised.candidate
    return {
        "event": event,
        "alert": {
            "alert_id": raised.alert_id,
            "kind": c.kind,
            "severity": c.severity,
            "district_id": c.district_id,
            "service_date": c.service_date.isoformat(),
            "point_id": c.point_id,
            "truck_id": c.truck_id,
            "condition_at": c.condition_at.isoformat(),
            "raised_at": raised.raised_at.isoformat(),
            "message": c.message,
        },
        "case_id": case_id,
    }


def case_payload(row: dict[str, Any], *, level: int, at: datetime) -> dict[str, Any]:
    return {
        "event": "case.escalated",
        "case": {
            "case_id": row["case_id"],
            "district_id": row["district_id"],
            "service_date": row["service_date"].isoformat(),
            "subject": row["subject"],
            "state": row["state"],
            "severity": row["severity"],
            "title": row["title"],
            "assignee": row["assignee"],
            "due_at": row["due_at"].isoformat(),
        },
        "level": level,
        "escalated_at": at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    final: bool  # no point retrying
    status: int | None
    error: str | None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float) -> Outcome:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Outcome(True, True, response.status, None)
    except urllib.error.HTTPError as exc:
        final = 400 <= exc.code < 500 and exc.code not in (408, 429)
        return Outcome(False, final, exc.code, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Outcome(False, False, None, f"{type(exc).__name__}: {reason}")


def signature(secret: bytes, body: bytes, *, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},sha256={mac}"


def backoff_s(attempts: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"  # never log paths: they often carry tokens


class Sender:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        secret: str | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.secret = secret.encode() if secret else None
        self.poll_interval_s = poll_interval_s

    def headers(
        self, delivery_id: int, event: str, body: bytes, *, secret: bytes, timestamp: int
    ) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "ClearDay-Webhook/1",
            "X-ClearDay-Event": event,
            "X-ClearDay-Delivery": str(delivery_id),
            "X-ClearDay-Signature": signature(secret, body, timestamp=timestamp),
        }

    def send_due(self, conn: psycopg.Connection, *, limit: int = 1000) -> int:
        """Post deliveries that are due, one per transaction (a slow receiver holds a
        lock on its own row only); returns how many were attempted."""
        done = 0
        while done < limit:
            with conn.transaction():
                due = repo.next_due_delivery(conn)
                if due is None:
                    return done
                delivery_id, url, event, payload = due.delivery_id, due.url, due.event, due.payload
                attempts = due.attempts
                body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
                secret = self.secret or repo.webhook_secret(conn, url=url).encode()
                headers = self.headers(
                    delivery_id, event, body, secret=secret, timestamp=int(time.time())
                )
                outcome = post(url, body, headers, timeout_s=self.timeout_s)
                attempts += 1
                if outcome.ok:
                    state = "delivered"
                elif outcome.final or attempts >= self.max_attempts:
                    state = "failed"
                    log.warning(
                        "webhook %s to %s failed for good after %d attempt(s): %s",
                        delivery_id, _host(url), attempts, outcome.error,
                    )  # fmt: skip
                else:
                    state = "pending"
                repo.record_attempt(
                    conn, delivery_id=delivery_id, state=state, attempts=attempts,
                    status=outcome.status, error=outcome.error, delivered=outcome.ok,
                    retry_in_s=backoff_s(attempts),
                )  # fmt: skip
                done += 1
        return done

    def run(self, stop: threading.Event) -> None:
        conn: psycopg.Connection | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = db.connect(self.url, autocommit=True)
                self.send_due(conn)
            except (psycopg.Error, db.DatabaseUnavailable) as exc:
                log.warning("webhook sender: %s", str(exc).strip())
                if conn is not None:
                    conn.close()
                conn = None
            stop.wait(self.poll_interval_s)
        if conn is not None:
            conn.close()
