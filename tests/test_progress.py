"""Progress shows on a terminal (a bar of the files read, then the steps) and stays quiet
when stderr is not a terminal, as under cron or a scheduler."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
from pathlib import Path

from conftest import JOURNEYS_BIN

TINY = Path(__file__).resolve().parent / "data" / "tiny"


def run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run a command with stdin/stdout/stderr on a pseudo-terminal; return all it printed."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=env, close_fds=True)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        out += chunk
    proc.wait()
    os.close(leader)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_progress_on_a_terminal(tmp_path):
    """On a terminal: a file bar reaching 1/1, then step lines, then the summary; `journeys report
    --html` shows its parts in order."""
    project = tmp_path / "p"
    shutil.copytree(TINY, project)
    out = run_in_terminal([str(JOURNEYS_BIN), "run", "-c", "journeys.toml"], project)
    assert "[########################] 1/1 files" in out
    assert "sessionize and label (polars), bucket 1 of 1 ..." in out and "publish ..." in out
    assert "marts: transitions (1 of 10) ..." in out and "marts: segment_comparison (10 of 10) ..." in out
    assert "run " in out and "succeeded" in out
    assert out.index("report: journey map (a pass over core.steps) ...") < out.index("report: bottlenecks and drop-offs ...")
    report = run_in_terminal([str(JOURNEYS_BIN), "report", "-c", "journeys.toml", "--html", "again.html"], project)
    assert report.index("findings ...") < report.index("report: the marts ...") < report.index(
        "report: journey map (a pass over core.steps) ...")
    # the findings printed are the ones the page shows: computed once, not again for the page
    assert "report: bottlenecks and drop-offs" not in report
    assert (project / "again.html").exists()


def test_quiet_without_a_terminal(tmp_path):
    """Not a terminal (a pipe, as under cron): no progress at all, only the summary on stdout."""
    project = tmp_path / "p"
    shutil.copytree(TINY, project)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "-c", "journeys.toml"], cwd=project, capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert "####" not in proc.stdout and "sessionize and label" not in proc.stdout
    assert proc.stdout.startswith("run ") and "succeeded" in proc.stdout.splitlines()[0]
