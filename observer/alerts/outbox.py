"""Deliveries of recorded alerts: which are due, what each attempt gave, what to list.

A delivery is one alert to one channel. Each attempt is recorded (time, duration, error);
a failed one is retried later with a doubling delay, until ``max_attempts``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from observer.alerts.state import HELD, PENDING, StoredAlert

__all__ = ["FAILED", "HELD", "PENDING", "SENT"]

SENT, FAILED = "sent", "failed"
_ALERT_COLUMNS = "a.id, a.created_usec, a.unit, a.kind, a.summary, a.run_id, a.host"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert to send to one channel (named by ``channel_key``, shown as ``channel``)."""

    id: int
    alert: StoredAlert
    channel: str
    channel_key: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try to deliver: when, how long it took, and why it failed (None: delivered)."""

    attempt: int
    started_usec: int
    duration_usec: int
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery with its attempts, for `observer alerts`."""

    channel: str
    status: str
    next_attempt_usec: int | None
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert with its deliveries, for `observer alerts`."""

    alert: StoredAlert
    deliveries: tuple[DeliveryRecord, ...]


def due_deliveries(
    conn: sqlite3.Connection, now_usec: int, busy: Collection[int] = (), limit: int = 20
) -> list[Delivery]:
    """Pending deliveries whose time has come, oldest first, but not those in ``busy``."""
    rows = conn.execute(
        f"SELECT d.id, d.channel, d.channel_key, d.attempts, {_ALERT_COLUMNS} "
        "FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.status = ? AND d.next_attempt_usec <= ? ORDER BY d.next_attempt_usec, d.id "
        "LIMIT ?",
        (PENDING, now_usec, limit + len(busy)),
    )
    due = [
        Delivery(row[0], StoredAlert(*row[4:]), row[1], row[2], row[3])
        for row in rows
        if row[0] not in busy
    ]
    return due[:limit]


def next_due_usec(conn: sqlite3.Connection) -> int | None:
    """When the next pending delivery is due, if any is."""
    row = conn.execute(
        "SELECT MIN(next_attempt_usec) FROM alert_deliveries WHERE status = ?", (PENDING,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def record_attempt(
    conn: sqlite3.Connection,
    delivery: Delivery,
    started_usec: int,
    duration_usec: int,
    error: str | None,
    *,
    max_attempts: int,
    retry_delay_usec: int,
) -> str:
    """Record one attempt and decide what follows: sent, a later retry, or given up."""
    attempt = delivery.attempts + 1
    if error is None:
        status, next_usec = SENT, None
    elif attempt >= max_attempts:
        status, next_usec = FAILED, None
    else:
        status = PENDING
        next_usec = started_usec + duration_usec + retry_delay_usec * 2 ** (attempt - 1)
    with conn:
        conn.execute(
            "INSERT OR REPLACE INTO alert_attempts VALUES (?, ?, ?, ?, ?)",
            (delivery.id, attempt, started_usec, duration_usec, error),
        )
        conn.execute(
            "UPDATE alert_deliveries SET status = ?, attempts = ?, next_attempt_usec = ? "
            "WHERE id = ?",
            (status, attempt, next_usec, delivery.id),
        )
    return status


def recent_alerts(
    conn: sqlite3.Connection,
    *,
    since_usec: int | None = None,
    limit: int = 50,
    user: str | None = None,
) -> list[AlertRecord]:
    """The newest alerts (newest first) with their deliveries and every attempt; ``user``:
    only those of that user's units (stored as ``USER/UNIT``)."""
    prefix = "" if user is None else f"{user}/"
    alerts = [
        StoredAlert(*row)
        for row in conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE a.created_usec >= ? "
            "AND substr(a.unit, 1, ?) = ? ORDER BY a.created_usec DESC, a.id DESC LIMIT ?",
            (since_usec or 0, len(prefix), prefix, limit),
        )
    ]
    records = []
    for alert in alerts:
        deliveries = []
        for delivery_id, channel, status, next_usec in conn.execute(
            "SELECT id, channel, status, next_attempt_usec FROM alert_deliveries "
            "WHERE alert_id = ? ORDER BY id",
            (alert.id,),
        ).fetchall():
            attempts = tuple(
                Attempt(*row)
                for row in conn.execute(
                    "SELECT attempt, started_usec, duration_usec, error FROM alert_attempts "
                    "WHERE delivery_id = ? ORDER BY attempt",
                    (delivery_id,),
                )
            )
            deliveries.append(DeliveryRecord(channel, status, next_usec, attempts))
        records.append(AlertRecord(alert, tuple(deliveries)))
    return records


def prune_alerts(conn: sqlite3.Connection, older_than_usec: int) -> int:
    """Delete alerts older than ``older_than_usec`` with their deliveries and attempts."""
    old = "SELECT id FROM alerts WHERE created_usec < ?"
    old_deliveries = f"SELECT id FROM alert_deliveries WHERE alert_id IN ({old})"
    with conn:
        conn.execute(
            f"DELETE FROM alert_attempts WHERE delivery_id IN ({old_deliveries})",
            (older_than_usec,),
        )
        conn.execute(f"DELETE FROM alert_deliveries WHERE alert_id IN ({old})", (older_than_usec,))
        deleted = conn.execute("DELETE FROM alerts WHERE created_usec < ?", (older_than_usec,))
        return int(deleted.rowcount)
