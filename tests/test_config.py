"""A bad config or a missing input stops `journeys` with exit 2 before anything is written.

Each case starts from the tiny project in tests/data/tiny (copied into
tmp_path) with one thing broken, and runs the real CLI in a subprocess, both
`journeys validate` and `journeys run`. The rule for every case: exit code 2;
stderr names the config file (or the data file) and the key (or column), and
says how to fix it ("Fix:"); no Python traceback; no output folder afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import duckdb
import pytest

from conftest import JOURNEYS_BIN

TINY = Path(__file__).resolve().parent / "data" / "tiny"
COMMANDS = ("validate", "run")


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the tiny project; its outputs would go to project/out."""
    dst = tmp_path / "project"
    shutil.copytree(TINY, dst)
    return dst


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in a text file."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def journeys(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOURNEYS_BIN), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


# --------------------------------------------------------------------------- the cases
# Each breaks one thing in `project` and returns (config path, texts stderr must contain).

Case = Callable[[Path], tuple[Path, list[str]]]


def config_missing(project: Path):
    """--config names a file that does not exist."""
    config = project / "missing.toml"
    return config, [str(config), "not found", "--config"]


def invalid_toml(project: Path):
    """A string without its closing quote: the message gives the line."""
    config = project / "journeys.toml"
    edit(config, 'name = "tiny"', 'name = "tiny')
    line = config.read_text().splitlines().index('name = "tiny') + 1
    return config, [str(config), "TOML", f"line {line}"]


def unknown_top_level_key(project: Path):
    """A table the config does not know ([colour])."""
    config = project / "journeys.toml"
    config.write_text(config.read_text() + '\n[colour]\nred = "ff0000"\n')
    return config, [str(config), "'colour'", "unknown key"]


def unknown_source_key(project: Path):
    """A key a [[sources]] table does not know."""
    config = project / "journeys.toml"
    edit(config, 'format = "csv"', 'format = "csv"\ncolour = "red"')
    return config, [str(config), "sources[0].colour", "unknown key"]


def source_missing_required_key(project: Path):
    """A [[sources]] table without its timestamp."""
    config = project / "journeys.toml"
    edit(config, 'timestamp = { column = "ts", format = "iso" }\n', "")
    return config, [str(config), "sources[0].timestamp", "missing"]


def source_glob_matches_nothing(project: Path):
    """A source path whose glob matches no file."""
    config = project / "journeys.toml"
    edit(config, 'path = "events*.csv"', 'path = "nothing/events*.csv"')
    return config, [str(config), "sources.web.path", "nothing/events*.csv"]


def mapped_column_absent(project: Path):
    """The data file lacks a column the source maps (page renamed to url): the error names the data file."""
    data = project / "events.csv"
    edit(data, "event_id,customer,ts,event,medium,page\n", "event_id,customer,ts,event,medium,url\n")
    return project / "journeys.toml", [str(data), "'page'", "web"]


def bad_format(project: Path):
    """A source format that is not csv, jsonl or parquet."""
    config = project / "journeys.toml"
    edit(config, 'format = "csv"', 'format = "xml"')
    return config, [str(config), "sources.web.format", "'xml'"]


def bad_duration(project: Path):
    """A duration written in words ("30 minutes" instead of "30m")."""
    config = project / "journeys.toml"
    edit(config, 'inactivity_timeout = "30m"', 'inactivity_timeout = "30 minutes"')
    return config, [str(config), "sessions.inactivity_timeout", "30 minutes"]


def unknown_graph_level(project: Path):
    """A graph level other than stage, event_type, channel:stage."""
    config = project / "journeys.toml"
    edit(config, 'level = "stage"', 'level = "page"')
    return config, [str(config), "graph.level", "'page'"]


def rule_stage_not_in_order(project: Path):
    """A rule labels with a stage that stages.order does not list."""
    config = project / "journeys.toml"
    edit(config, 'stage = "awareness"', 'stage = "loyalty"')
    return config, [str(config), "stages.rules[0].stage", "'loyalty'"]


def rule_channel_not_configured(project: Path):
    """A rule names a channel that project.channels does not list."""
    config = project / "journeys.toml"
    edit(config, 'channel = ["web"]', 'channel = ["fax"]')
    return config, [str(config), "stages.rules[0].channel", "'fax'"]


def goal_stage_not_in_order(project: Path):
    """journeys.goal_stage is not one of stages.order."""
    config = project / "journeys.toml"
    edit(config, 'goal_stage = "purchase"', 'goal_stage = "checkout"')
    return config, [str(config), "journeys.goal_stage", "'checkout'"]


def bad_time_zone(project: Path):
    """A source's fixed time zone that is not an IANA name."""
    config = project / "journeys.toml"
    edit(
        config,
        'timestamp = { column = "ts", format = "iso" }',
        'timestamp = { column = "ts", format = "%Y-%m-%dT%H:%M:%S", timezone = "Mars/Olympus_Mons" }',
    )
    return config, [str(config), "sources.web.timestamp.timezone", "Mars/Olympus_Mons"]


def customers_file_missing(project: Path):
    """[customers] path names a file that does not exist."""
    config = project / "journeys.toml"
    (project / "customers.csv").unlink()
    return config, [str(config), "customers.path", str(project / "customers.csv")]


def customers_segment_column_missing(project: Path):
    """A segment column the customers file does not have: the error names the customers file."""
    edit(project / "journeys.toml", 'segments = ["region"]', 'segments = ["region", "tier"]')
    return project / "journeys.toml", [str(project / "customers.csv"), "'tier'", "segments"]


def session_timeout_over_journey_timeout(project: Path):
    """A session timeout longer than the journey timeout (a journey could split inside a session)."""
    config = project / "journeys.toml"
    edit(config, 'timeout = "30d"', 'timeout = "10m"')
    return config, [str(config), "sessions.inactivity_timeout", "journeys.timeout"]


CASES: list[Case] = [
    config_missing,
    invalid_toml,
    unknown_top_level_key,
    unknown_source_key,
    source_missing_required_key,
    source_glob_matches_nothing,
    mapped_column_absent,
    bad_format,
    bad_duration,
    unknown_graph_level,
    rule_stage_not_in_order,
    rule_channel_not_configured,
    goal_stage_not_in_order,
    bad_time_zone,
    customers_file_missing,
    customers_segment_column_missing,
    session_timeout_over_journey_timeout,
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_exits_2_naming_file_and_key(case: Case, command: str, project: Path, journeys_env):
    """Exit 2; stderr names the file and the key or column and says 'Fix:'; no traceback; nothing written."""
    config, expected = case(project)
    proc = journeys([command, "--config", str(config)], journeys_env, cwd=project)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in stderr:\n{proc.stderr}"
    assert "Fix:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert proc.stdout == "", proc.stdout
    assert not (project / "out").exists(), f"{command} wrote {sorted(p.name for p in (project / 'out').rglob('*'))}"


@pytest.mark.parametrize("command", COMMANDS)
def test_tiny_project_is_valid(command: str, project: Path, journeys_env):
    """The unbroken tiny project passes (so each case above fails for its one change only)."""
    proc = journeys([command, "--config", str(project / "journeys.toml")], journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert (project / "out").exists() == (command == "run")


def test_rule_event_type_glob_labels_events(project: Path, journeys_env):
    """A rule's event_type may be a glob (email_* matches email_open), as docs/config.md and the sample use.

    Regression: globs were once translated with fnmatch.translate, whose '\\Z'
    Polars' regex engine rejects, so any config with a glob failed with exit 1.
    """
    edit(project / "journeys.toml", 'event_type = ["product_view", "email_open"]', 'event_type = ["product_view", "email_*"]')
    proc = journeys(["run", "--config", str(project / "journeys.toml")], journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(project / "out" / "journeys.duckdb"), read_only=True)
    try:
        rows = con.execute("select distinct event_type, rule_id, stage from core.steps order by 1").fetchall()
    finally:
        con.close()
    assert rows == [
        ("email_open", "consider", "consideration"),
        ("page_view", "browse", "awareness"),
        ("product_view", "consider", "consideration"),
        ("purchase", "buy", "purchase"),
    ]
