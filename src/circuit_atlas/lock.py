"""One writer at a time: an OS-level lock on a results store or a suite directory.

``circuit-atlas run`` holds the lock of its results store (``state/driver.lock``) and
``circuit-atlas train`` the lock of its suite directory (``.train.lock``) for as long as they
write. A second process asking for a held lock is refused with :class:`~circuit_atlas.errors.
LockedError` naming the holder (pid, host, command, since when), or waits for it.

The lock is a ``flock(2)`` lock taken through the ``filelock`` library
(https://py-filelock.readthedocs.io): the kernel releases it when its process ends, however it
ends, so a run killed with ``SIGKILL`` never leaves a stale lock behind. The holder's details
are kept next to the lock in a JSON record that only serves the error message; a record left by
a dead process is overwritten by the next holder. (``flock`` locks are per host: two hosts
writing one store over NFS are not excluded.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import filelock

from circuit_atlas.errors import LockedError

__all__ = ["hold_lock", "read_holder"]

logger = logging.getLogger(__name__)


def read_holder(record: Path) -> dict | None:
    """Return the holder record of a lock (pid, host, command, since), or None if unreadable."""
    try:
        holder = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(holder: dict) -> bool:
    """Whether the holder's process runs (always True for another host: it cannot be asked)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _current_holder(record: Path, patience: float = 2.0) -> dict | None:
    """The record of the process that holds the lock now.

    The holder takes the lock first and writes its record just after, so a refused process can
    find no record yet, or the record of a killed earlier holder; it re-reads for up to
    ``patience`` seconds until the record names a live process (then, or at the deadline, it
    returns what it read).
    """
    deadline = time.monotonic() + patience
    while True:
        holder = read_holder(record)
        if (holder is not None and _alive(holder)) or time.monotonic() >= deadline:
            return holder
        time.sleep(0.05)


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return (f"process {holder.get('pid')} on {holder.get('host')} "
            f"(`{holder.get('command')}`, since {holder.get('since')})")


@contextlib.contextmanager
def hold_lock(lock_path: Path, record: Path, what: str, *, wait: float | None = 0,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock ``lock_path`` for the body of a ``with`` block.

    Args:
        lock_path: The lock file (created; never deleted, as ``filelock`` recommends).
        record: JSON file recording the holder (pid, host, command, since) while held.
        what: What is locked, for messages (``"results store '/x/results'"``).
        wait: Seconds to wait for a held lock: 0 refuses at once, None waits without limit.
        on_wait: Called once with a message naming the holder before waiting.

    Raises:
        LockedError: If the lock is held by another process (or another lock object in this
            process) and ``wait`` ran out; nothing has been written.
    """
    lock = filelock.FileLock(lock_path, is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = _describe(_current_holder(record))
        if wait == 0:
            raise LockedError(f"{what} is in use by {holder}; wait for it to finish, or run "
                              "again with --wait to wait for it") from None
        if on_wait is not None:
            on_wait(f"{what} is in use by {holder}; waiting for it to finish")
        try:
            lock.acquire(timeout=-1 if wait is None else wait)
        except filelock.Timeout:
            raise LockedError(f"{what} is still in use by {holder} after waiting {wait} s; "
                              "nothing was done") from None
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        staged = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        staged.write_text(json.dumps(holder) + "\n", encoding="utf-8")
        os.replace(staged, record)  # readers never see half a record
        logger.debug("locked %s", what)
        yield
    finally:
        with contextlib.suppress(OSError):
            record.unlink()
        lock.release()
