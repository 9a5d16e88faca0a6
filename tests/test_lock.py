"""One run at a time: a second run on the same outputs exits 1 naming the holder; a stale lock
from a killed run is cleared."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline.config
import pipeline.run
from conftest import JOURNEYS_BIN, SAMPLE, copy_config
from pipeline.lock import LOCK_NAME, RunLocked, run_lock

TINY = Path(__file__).resolve().parent / "data" / "tiny"


@pytest.fixture
def project(tmp_path) -> Path:
    dst = tmp_path / "project"
    shutil.copytree(TINY, dst)
    return dst


def write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "run_id": "held-run",
                                "command": "run", "started_at": "2026-11-25T00:00:00+00:00"}))
    return path


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_stops_the_run_with_its_name(project):
    """While a live process holds the lock, run_pipeline raises RunLocked naming the run, pid and host,
    and the lock and outputs are left alone."""
    config = pipeline.config.load_config(project / "journeys.toml")
    lock = write_lock(config.warehouse.parent, os.getpid())
    with pytest.raises(RunLocked, match=rf"held-run, pid {os.getpid()} on {socket.gethostname()}"):
        pipeline.run.run_pipeline(config)
    assert lock.exists() and json.loads(lock.read_text())["run_id"] == "held-run"
    assert not config.warehouse.exists()


def test_the_cli_exits_1_when_locked(project):
    """`journeys run` on locked outputs: exit 1, the message names the holder and says what to do."""
    config = pipeline.config.load_config(project / "journeys.toml")
    write_lock(config.warehouse.parent, os.getpid())
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(project / "journeys.toml")], capture_output=True, text=True,
                          env={"CI": "true"})
    assert proc.returncode == 1
    assert "held-run" in proc.stderr and "Fix: wait for it to finish" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_stale_lock_is_cleared(project):
    """A lock whose process is gone (a killed run) is removed, the run succeeds, and no lock remains."""
    config = pipeline.config.load_config(project / "journeys.toml")
    lock = write_lock(config.warehouse.parent, dead_pid())
    result = pipeline.run.run_pipeline(config)
    assert result.status == "succeeded"
    assert not lock.exists()


def test_a_lock_from_another_host_is_not_cleared(project):
    """A lock of another host cannot be judged from here: the run stops and names that host."""
    config = pipeline.config.load_config(project / "journeys.toml")
    write_lock(config.warehouse.parent, dead_pid(), host="some-other-host")
    with pytest.raises(RunLocked, match="if it died on some-other-host, remove the lock file"):
        pipeline.run.run_pipeline(config)


def test_the_lock_is_released_after_a_failed_run(project, monkeypatch):
    """A run that fails releases its lock, so the next run can start."""
    config = pipeline.config.load_config(project / "journeys.toml")

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline.run, "build_step", boom)
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run.run_pipeline(config)
    assert not (config.warehouse.parent / LOCK_NAME).exists()
    monkeypatch.undo()
    assert pipeline.run.run_pipeline(config).status == "succeeded"


def test_nested_lock_on_the_same_folder_is_refused(tmp_path):
    """The lock is exclusive even within one process: a second holder is refused while the first holds it."""
    with run_lock(tmp_path, "first", "run"):
        with pytest.raises(RunLocked, match="first"):
            with run_lock(tmp_path, "second", "run"):
                pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_concurrent_runs_one_proceeds(tmp_path):
    """Two `journeys run` on the same outputs, the second started while the first holds the lock: the
    second exits 1 naming the lock, the first succeeds, and the published outputs are whole afterwards."""
    config_path = copy_config(SAMPLE / "journeys.toml", tmp_path)
    config = pipeline.config.load_config(config_path)
    cmd = [str(JOURNEYS_BIN), "run", "-c", str(config_path)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"CI": "true"})
    lock = config.warehouse.parent / LOCK_NAME
    deadline = time.monotonic() + 60
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert lock.exists(), "the first run never took the lock"
    second = subprocess.run(cmd, capture_output=True, text=True, env={"CI": "true"})
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert second.returncode == 1, second.stderr
    assert LOCK_NAME in second.stderr and "Fix: wait for it to finish" in second.stderr
    assert config.warehouse.exists() and not lock.exists()
