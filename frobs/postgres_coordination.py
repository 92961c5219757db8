"""``PostgresCoordination``: the scheduler's workers agree in the catalog database.

The lead is a session advisory lock held on a connection of its own: exactly
one worker of all instances holds it, and when that worker's instance dies its
connection closes and the lock goes with it, so another takes the lead within
seconds.  A run holds an advisory lock of its task the same way.  Each task's
state and trigger are a row of ``scheduler_tasks`` (created by the catalog's
migrations).  Nothing here decides when a task runs.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import Iterator

import psycopg

from .coordination import Coordination
from .database import Database

logger = logging.getLogger(__name__)

_LEAD = "frobs scheduler: lead"


class PostgresCoordination(Coordination):
    def __init__(self, url: str) -> None:
        self.database = Database(url, pool_size=2, name="frobs-scheduler")
        self._leading: psycopg.Connection | None = None

    def try_lead(self) -> bool:
        connection = self.database.dedicated()
        if self.database.try_lock(connection, _LEAD):
            self._leading = connection
            return True
        connection.close()
        return False

    def still_leading(self) -> bool:
        if self._leading is None:
            return False
        try:
            self._leading.execute("SELECT 1")
            return True
        except psycopg.Error:
            logger.warning("Lost the scheduler lead: its database connection broke")
            return False

    def stop_leading(self) -> None:
        if self._leading is not None:
            self._leading.close()  # the advisory lock goes with the session
            self._leading = None

    @contextmanager
    def run_claim(self, task_id: str) -> Iterator[bool]:
        with self.database.dedicated() as connection:
            yield self.database.try_lock(connection, f"frobs scheduler: run {task_id}")

    def save_state(self, state: dict) -> None:
        with self.database.connection() as connection:
            connection.cursor().executemany(
                "INSERT INTO scheduler_tasks (task_id, state) VALUES (%s, %s)"
                " ON CONFLICT (task_id) DO UPDATE SET state = EXCLUDED.state",
                [(task_id, json.dumps(value)) for task_id, value in state.items()],
            )

    def saved_state(self) -> dict:
        with self.database.connection() as connection:
            rows = connection.execute(
                "SELECT task_id, state::text FROM scheduler_tasks"
                " WHERE state IS NOT NULL"
            ).fetchall()
        return {task_id: json.loads(state) for task_id, state in rows}

    def trigger(self, task_id: str) -> None:
        with self.database.connection() as connection:
            connection.execute(
                "INSERT INTO scheduler_tasks (task_id, triggered) VALUES (%s, true)"
                " ON CONFLICT (task_id) DO UPDATE SET triggered = true",
                (task_id,),
            )

    def take_trigger(self, task_id: str) -> bool:
        connection = self._leading
        if connection is None:
            return False
        row = connection.execute(
            "UPDATE scheduler_tasks SET triggered = false"
            " WHERE task_id = %s AND triggered RETURNING 1",
            (task_id,),
        ).fetchone()
        return row is not None
