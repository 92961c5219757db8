"""Where the scheduler's workers agree: who runs the tasks, which runs go on,
each task's last run, and the triggers asked for.

``Coordination`` is what the scheduler needs; ``FileCoordination`` does it with
files in one folder, for the workers of one machine: ``flock`` locks (dropped by
the kernel when a holder dies), a state file, and a trigger file per task.
``PostgresCoordination`` (in ``postgres_coordination``) does it in the catalog
database, for instances on several machines.  Neither runs anything: the
scheduler decides when.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .durable_files import atomic_write


class Coordination(ABC):
    @abstractmethod
    def try_lead(self) -> bool:
        """Become the one that runs the scheduled tasks, if no one is."""

    def still_leading(self) -> bool:
        """Whether the lead taken is still held (a lost connection loses it)."""
        return True

    @abstractmethod
    def stop_leading(self) -> None:
        """Give the lead up, for another to take."""

    @abstractmethod
    def run_claim(self, task_id: str) -> AbstractContextManager[bool]:
        """Held while a run of ``task_id`` goes on; yields False when another
        run of it goes on anywhere."""

    @abstractmethod
    def save_state(self, state: dict) -> None:
        """Record each task's state (``{task id: {...}}``) for every worker."""

    @abstractmethod
    def saved_state(self) -> dict:
        """What ``save_state`` last recorded, from any worker."""

    @abstractmethod
    def trigger(self, task_id: str) -> None:
        """Ask the leader to run ``task_id`` now."""

    @abstractmethod
    def take_trigger(self, task_id: str) -> bool:
        """Whether ``task_id`` was triggered since last asked; clears it."""


class FileCoordination(Coordination):
    def __init__(self, lock_path: Path, state_dir: Path | None = None) -> None:
        self.lock_path = Path(lock_path)
        self.state_dir = Path(state_dir or self.lock_path.parent / "scheduler")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._leader = FileLock(self.lock_path, thread_local=False)

    def try_lead(self) -> bool:
        try:
            self._leader.acquire(blocking=False)
            return True
        except Timeout:
            return False

    def stop_leading(self) -> None:
        self._leader.release()

    @contextmanager
    def run_claim(self, task_id: str) -> Iterator[bool]:
        claim = FileLock(
            self.state_dir / f"run-{_file_name(task_id)}.lock", thread_local=False
        )
        try:
            claim.acquire(blocking=False)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            claim.release()

    def save_state(self, state: dict) -> None:
        atomic_write(self.state_dir / "state.json", json.dumps(state).encode())

    def saved_state(self) -> dict:
        try:
            return json.loads((self.state_dir / "state.json").read_bytes())
        except FileNotFoundError:
            return {}

    def trigger(self, task_id: str) -> None:
        (self.state_dir / _file_name(task_id)).write_bytes(b"")

    def take_trigger(self, task_id: str) -> bool:
        try:
            (self.state_dir / _file_name(task_id)).unlink()
            return True
        except FileNotFoundError:
            return False


def _file_name(task_id: str) -> str:
    return "trigger-" + hashlib.sha256(task_id.encode()).hexdigest()[:32]
