"""One run at a time per output folder: a lock file that names its holder.

A second `journeys run` (or step) on the same outputs stops with exit 1 and
says who holds the lock. A lock left by a killed run (its process is gone) is
stale: it is cleared, and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)
LOCK_NAME = ".journeys.lock"


class RunLocked(RuntimeError):
    """Another live run holds the lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def run_lock(folder: Path, run_id: str, command: str) -> Iterator[Path]:
    """Hold `folder/.journeys.lock` for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id, "command": command,
          "started_at": datetime.now(timezone.utc).isoformat()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            same_host = holder.get("host") == me["host"]
            if holder and same_host and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
                log.warning("cleared a stale lock of run %s (pid %s is gone)", holder.get("run_id"), holder.get("pid"))
                path.unlink(missing_ok=True)
                continue
            if not holder:
                raise RunLocked(f"{path} exists but cannot be read. Fix: if no journeys run is going on, remove it") from None
            raise RunLocked(
                f"another journeys {holder.get('command', 'run')} holds {path}: run {holder.get('run_id')}, "
                f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}. "
                "Fix: wait for it to finish" + ("" if same_host else f"; if it died on {holder.get('host')}, remove the lock file")
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield path
    finally:
        if _holder(path).get("run_id") == run_id:
            path.unlink(missing_ok=True)
