"""Shared test helpers: small inline event tables and an in-memory warehouse built from them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline import marts, schema, warehouse
from pipeline.journeys import BuildSettings, build_journeys

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def _shared_dir() -> Path:
    """The team's shared folder (real logs for the peer comparisons): $JOURNEYS_SHARED, else
    `shared/` beside the checkout, else, in a clone made elsewhere (a temp folder), beside the
    local repository it was cloned from."""
    if os.environ.get("JOURNEYS_SHARED"):
        return Path(os.environ["JOURNEYS_SHARED"])
    beside = ROOT.parent / "shared"
    if beside.exists():
        return beside
    origin = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir() and (Path(origin).resolve().parent / "shared").exists():
        return Path(origin).resolve().parent / "shared"
    return beside


SHARED = _shared_dir()
REALLOGS = SHARED / "reallogs"
JOURNEYS_BIN = Path(sys.executable).parent / "journeys"


def ts(value: str) -> datetime:
    """'2026-01-01 10:00' (or ISO with zone) -> aware UTC datetime."""
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def events_frame(rows: list[tuple]) -> pl.DataFrame:
    """Canonical events from (customer_id, ts, channel, event_type[, properties_json]) tuples.

    event_id is e1, e2, ... in the given order, which is also the input position
    (source_row) used to break ties between equal times.
    """
    data = {k: [] for k in schema.EVENTS_SCHEMA}
    for i, row in enumerate(rows, start=1):
        customer, when, channel, event_type, *rest = row
        data["event_id"].append(f"e{i}")
        data["customer_id"].append(customer)
        data["ts"].append(ts(when) if isinstance(when, str) else when)
        data["channel"].append(channel)
        data["event_type"].append(event_type)
        data["source"].append("test")
        data["source_file"].append("inline")
        data["source_row"].append(i)
        data["properties"].append(rest[0] if rest else "{}")
    return pl.DataFrame(data, schema=schema.EVENTS_SCHEMA)


def marts_db(
    events: pl.DataFrame,
    settings: BuildSettings,
    as_of: datetime,
    stage_order=schema.DEFAULT_STAGES,
    segments_long: pl.DataFrame | None = None,
    **mart_options,
) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse with core and marts built from `events` by the real SQL files.
    `mart_options` are further MartSettings fields (funnel_mode, funnel_window, min_journeys, ...).
    The build gets the same funnel (stage_order, funnel_mode, funnel_window) as the marts, as
    both get it from one config in a run."""
    con = warehouse.connect(":memory:")
    settings = dataclasses.replace(settings, funnel_stages=tuple(stage_order),
                                   funnel_mode=mart_options.get("funnel_mode", "strict"),
                                   funnel_window=mart_options.get("funnel_window"))
    core = build_journeys(events, settings, as_of)
    keys = sorted(set(segments_long["segment_key"])) if segments_long is not None and segments_long.height else []
    mart_settings = marts.MartSettings(
        level=settings.level, goal_stage=settings.goal_stage, funnel_stages=tuple(stage_order), segment_keys=keys,
        journey_timeout=settings.journey_timeout, **mart_options
    )
    marts.write_settings(con, mart_settings, as_of)
    marts.write_all_core(con, core, segments_long)
    marts.build_marts(con)
    return con


@pytest.fixture
def journeys_env() -> dict:
    """Environment for running the real `journeys` CLI in a subprocess (no terminal progress)."""
    env = dict(os.environ)
    env["CI"] = "true"
    return env


def copy_config(config: Path, out_dir: Path, name: str = "journeys.toml") -> Path:
    """A copy of `config` in out_dir whose relative paths still point at the original
    data, and whose outputs ([output]) go to out_dir/build."""
    import tomllib

    text = config.read_text()
    raw = tomllib.loads(text)
    base = config.parent.resolve()
    lines = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        if section == "[output]" and "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            default = {"warehouse": "journeys.duckdb", "export_dir": "export", "graph_dir": "graph", "report": "report.html"}[key]
            line = f'{key} = "{(out_dir / "build" / default).as_posix()}"'
        elif stripped.startswith("path = ") and section in ("[[sources]]", "[customers]", "[[identity.maps]]"):
            rel = stripped.split("=", 1)[1].strip().strip('"')
            line = f'path = "{(base / rel).as_posix()}"' if not rel.startswith("/") else line
        lines.append(line)
    assert raw  # the original parses
    out = out_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out
