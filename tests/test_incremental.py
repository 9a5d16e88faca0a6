"""Incremental runs equal a full rebuild. Generated input arrives in batches (including late
events in a file that sorts before the ones already read, a file that changes and a file that
disappears); after every batch, an incremental run is compared with a full rebuild of the same
files, table by table."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
import pipeline.config
import pipeline.run
from conftest import ROOT
from pipeline.sample import write_sample

COMPARED = ("core", "marts", "views")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """A small generated sample (150 customers), written once."""
    out = tmp_path_factory.mktemp("raw")
    write_sample(out, customers=150, seed=3)
    return out


def config_for(landing: Path, out: Path) -> pipeline.config.Config:
    """The sample's config reading `landing`, writing to `out`."""
    text = (ROOT / "data" / "sample" / "journeys.toml").read_text()
    text = re.sub(r'(?m)^(warehouse|export_dir|graph_dir|report) = ".*"$',
                  lambda m: f'{m.group(1)} = "{out / m.group(1)}"', text)
    path = landing / f"journeys-{out.name}.toml"
    path.write_text(text)
    return pipeline.config.load_config(path)


def tables(db: Path) -> dict[str, list]:
    """Every compared table as sorted rows, and staging.events without batch_id."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [n for (n,) in con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in (select unnest(?)) order by 1", [list(COMPARED)]).fetchall()]
        got = {n: sorted(map(repr, con.execute(f"select * from {n}").fetchall())) for n in names}
        got["staging.events"] = sorted(map(repr, con.execute("select * exclude (batch_id) from staging.events").fetchall()))
        return got
    finally:
        con.close()


def full_rebuild(landing: Path, scratch: Path) -> dict[str, list]:
    shutil.rmtree(scratch, ignore_errors=True)
    config = config_for(landing, scratch)
    pipeline.run.run_pipeline(config, full_refresh=True)
    return tables(config.warehouse)


def assert_equal(inc: dict, full: dict, when: str) -> None:
    assert inc.keys() == full.keys(), when
    for name in inc:
        assert inc[name] == full[name], f"{name} differs from the full rebuild {when}"


def split_lines(path: Path, keep: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """The data lines of a file split in two at random (header kept aside for CSV)."""
    lines = path.read_text().splitlines()
    header, body = (lines[:1], lines[1:]) if path.suffix == ".csv" else ([], lines)
    kept, moved = [], []
    for line in body:
        (kept if rng.random() < keep else moved).append(line)
    return header + kept, header + moved


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_batches_with_late_changed_and_removed_files_equal_a_full_rebuild(raw, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "inc"
    landing.mkdir()
    shutil.copy(raw / "customers.csv", landing / "customers.csv")
    (landing / "crm").mkdir()
    shutil.copy(raw / "crm" / "crm_export.csv", landing / "crm" / "crm_export.csv")  # the identity map
    rng = random.Random(11)
    june = raw / "web" / "clickstream-2026-06.jsonl"
    june_now, june_late = split_lines(june, keep=0.8, rng=rng)
    batches = [
        # batch 1: a file of every source (June web without its late fifth)
        {"web/clickstream-2026-06.jsonl": june_now, "social/social_export.csv": None, "call_center/calls_202606.csv": None,
         "store/pos_receipts.csv": None, "email/email_events.csv": None},
        # batch 2: more months
        {"web/clickstream-2026-07.jsonl": None, "web/clickstream-2026-08.jsonl": None,
         "call_center/calls_202607.csv": None, "call_center/calls_202608.csv": None},
        # batch 3: the rest, plus June's late events in a file that sorts before every web file
        {"web/clickstream-2026-09.jsonl": None, "web/clickstream-2026-10.jsonl": None,
         "call_center/calls_202609.csv": None, "call_center/calls_202610.csv": None,
         "web/clickstream-2026-05-late.jsonl": june_late},
    ]
    for number, batch in enumerate(batches, start=1):
        for name, lines in batch.items():
            if lines is None:
                (landing / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(raw / name, landing / name)
            else:
                write(landing / name, lines)
        result = pipeline.run.run_pipeline(config_for(landing, out))
        assert result.counts["mode"] == ("full" if number == 1 else "incremental")
        assert_equal(tables(out / "warehouse"), full_rebuild(landing, tmp_path / "full"), f"after batch {number}")
    # batch 4: a file changes (half its rows go) and another disappears
    social = landing / "social" / "social_export.csv"
    kept, _ = split_lines(social, keep=0.5, rng=rng)
    write(social, kept)
    (landing / "call_center" / "calls_202607.csv").unlink()
    result = pipeline.run.run_pipeline(config_for(landing, out))
    assert result.counts["mode"] == "incremental" and result.counts["ingest"]["files_withdrawn"] == 2
    assert_equal(tables(out / "warehouse"), full_rebuild(landing, tmp_path / "full"), "after a changed and a removed file")
    # nothing new: nothing read, nothing rebuilt, tables and exported Parquet content unchanged
    before, before_export = tables(out / "warehouse"), exported(out / "export_dir")
    result = pipeline.run.run_pipeline(config_for(landing, out))
    assert result.counts["ingest"]["files"] == 0 and result.counts["build"]["customers_rebuilt"] == 0
    assert tables(out / "warehouse") == before
    assert exported(out / "export_dir") == before_export


def exported(folder: Path) -> dict[str, list]:
    """Every exported table's rows (sorted), read back from its Parquet with DuckDB."""
    con = duckdb.connect()
    try:
        found = {}
        for path in sorted(folder.glob("*.parquet")):
            pattern = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
            found[path.name] = sorted(map(repr, con.execute("select * from read_parquet(?, hive_partitioning = true)", [pattern]).fetchall()))
        return found
    finally:
        con.close()


def test_a_changed_config_forces_a_full_rebuild_and_says_so(raw, tmp_path):
    """The config's hash is part of the run record: after an edit the next run is a full one, with the reason."""
    landing = tmp_path / "landing"
    shutil.copytree(raw, landing)
    config = config_for(landing, tmp_path / "out")
    assert pipeline.run.run_pipeline(config).counts["mode"] == "full"
    assert pipeline.run.run_pipeline(config).counts["mode"] == "incremental"
    config.path.write_text(config.path.read_text().replace('timeout = "30d"', 'timeout = "20d"'))
    result = pipeline.run.run_pipeline(pipeline.config.load_config(config.path))
    assert (result.counts["mode"], result.counts["mode_reason"]) == ("full", "the config changed since the last run")


@pytest.mark.slow
def test_a_warehouse_of_an_older_version_is_rebuilt_in_full(raw, tmp_path):
    """A warehouse made by 0.2.0 (core.journeys without visits, path and channels) is not
    appended to: the next run is a full one, says why, and its journeys have their paths."""
    landing = tmp_path / "landing"
    shutil.copytree(raw, landing)
    config = config_for(landing, tmp_path / "out")
    assert pipeline.run.run_pipeline(config).counts["mode"] == "full"
    con = duckdb.connect(str(config.warehouse))
    try:  # what 0.2.0 left: its core.journeys, and its version on the run record
        con.execute("drop view if exists views.journey_paths")
        for column in ("visits", "path", "channels"):
            con.execute(f"alter table core.journeys drop column {column}")
        con.execute("update meta.runs set package_version = '0.2.0'")
    finally:
        con.close()
    result = pipeline.run.run_pipeline(config)
    assert (result.counts["mode"], result.counts["mode_reason"]) == (
        "full", f"journeys changed from 0.2.0 to {pipeline.__version__}")
    con = duckdb.connect(str(config.warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from core.journeys where path is null or visits < 1").fetchall() == [(0,)]
        assert con.execute("select count(*) from views.journey_paths").fetchall() == \
            con.execute("select count(*) from core.journeys").fetchall()
    finally:
        con.close()


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_splits_of_the_web_log_equal_a_full_rebuild(raw, tmp_path_factory, data):
    """Hypothesis draws how the web clickstream is cut into files and in which order they arrive;
    after the last arrival the incremental warehouse equals a full rebuild."""
    tmp = tmp_path_factory.mktemp("split")
    landing, out = tmp / "landing", tmp / "inc"
    shutil.copytree(raw, landing)
    web = sorted((landing / "web").glob("*.jsonl"))
    lines = [ln for p in web for ln in p.read_text().splitlines()]
    for p in web:
        p.unlink()
    parts = data.draw(st.integers(2, 5), label="files")
    cut = sorted(data.draw(st.lists(st.integers(0, len(lines)), min_size=parts - 1, max_size=parts - 1), label="cuts"))
    chunks = [lines[a:b] for a, b in zip([0, *cut], [*cut, len(lines)])]
    names = data.draw(st.permutations([f"web/part-{i}.jsonl" for i in range(parts)]), label="names")
    order = data.draw(st.permutations(range(parts)), label="arrival")
    for i in order:  # the first run (a full one) comes with the first file
        write(landing / names[i], chunks[i])
        pipeline.run.run_pipeline(config_for(landing, out))
    assert_equal(tables(out / "warehouse"), full_rebuild(landing, tmp / "full"), f"cuts {cut}, arrival {order}")
