"""The Spark engine (`--engine spark`) gives the local engine's warehouse, table for table.

The end-to-end tests need Java 17+ and pyspark (the test extra installs pyspark;
CI machines have Java). They run in `make test`; `pytest -m spark` selects them
alone. One SparkSession (local[2]) serves the in-process runs of this module;
the sample test runs the real CLI in subprocesses, which start their own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline import spark_engine
from pipeline.config import ConfigError, SparkSettings, load_config
from pipeline.journeys import BuildSettings, build_journeys
from pipeline.run import run_pipeline
from pipeline.sample import write_sample

from conftest import JOURNEYS_BIN, SAMPLE, copy_config, events_frame
from synthetic_log import write_log

needs_spark = pytest.mark.skipif(
    shutil.which("java") is None or not spark_engine.pyspark_available(),
    reason="the Spark engine needs Java 17+ on PATH and pyspark (make setup-test installs pyspark)",
)
SCHEMAS = ("core", "marts")


@pytest.fixture(scope="module")
def spark():
    """One local[2] SparkSession for the module's in-process runs (run_pipeline finds it active)."""
    session = spark_engine.spark_session(SparkSettings(master="local[2]"))
    yield session
    session.stop()


def assert_same_warehouse(local_db: Path, spark_db: Path) -> int:
    """The same core and mart tables with the same rows. Each table's rows are first compared
    as multisets by their count and the sum of their row hashes (one scan, so the 4M-row
    tables of a million events take a second); a table whose fingerprints differ is compared
    row by row, ordered by all columns, where floating-point columns (rates, means,
    p-values) may differ by 1e-12 relative, since DuckDB's parallel sums of doubles need
    not be bit-reproducible, and everything else must be identical. Returns the number of
    tables compared."""
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        con.execute("attach ? as l (read_only)", [str(local_db)])
        con.execute("attach ? as s (read_only)", [str(spark_db)])
        listed = "select schema_name, table_name from duckdb_tables() where database_name = ? and schema_name in (select unnest(?)) order by all"
        names = con.execute(listed, ["l", list(SCHEMAS)]).fetchall()
        assert names == con.execute(listed, ["s", list(SCHEMAS)]).fetchall()
        assert {("core", "steps"), ("core", "sessions"), ("core", "journeys"), ("marts", "transitions"), ("marts", "funnel")} <= set(names)
        for schema_name, table in names:
            name = f'"{schema_name}"."{table}"'
            local, spark = (con.execute(f"select count(*), sum(hash(t)::hugeint) from {db}.{name} as t").fetchall()[0] for db in ("l", "s"))
            assert local[0] > 0, f"{name} is empty: comparing it proves nothing"
            if local != spark:
                rows = {db: con.sql(f"select * from {db}.{name} order by all").pl() for db in ("l", "s")}
                assert_frame_equal(rows["s"], rows["l"], check_exact=False, rel_tol=1e-12, abs_tol=0.0)
        return len(names)
    finally:
        con.close()


# --------------------------------------------------------------------------- settings (no JVM)


def test_local_master_binds_to_loopback_with_the_ui_off():
    """A local master: driver host and bind address 127.0.0.1, no web UI."""
    conf = spark_engine.session_conf(SparkSettings(master="local[2]"), {})
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_cluster_master_keeps_the_cluster_network_settings():
    """A cluster master gets no loopback binding (its executors must reach the driver)."""
    conf = spark_engine.session_conf(SparkSettings(master="spark://head:7077", executor_memory="8g", partitions=400), {})
    assert "spark.driver.host" not in conf and "spark.driver.bindAddress" not in conf
    assert conf["spark.executor.memory"] == "8g"
    assert conf["spark.sql.shuffle.partitions"] == "400"


def test_spark_submit_settings_win_over_the_config():
    """What spark-submit set (--master, --conf) is never overridden."""
    conf = spark_engine.session_conf(SparkSettings(master="local[*]", executor_memory="2g"),
                                     {"spark.master": "yarn", "spark.executor.memory": "16g"})
    assert "spark.master" not in conf and "spark.executor.memory" not in conf
    assert "spark.driver.host" not in conf  # yarn is not local: no loopback binding


def test_environment_overrides_the_config():
    """JOURNEYS_SPARK_* override [spark], so one config runs on a laptop and on a cluster."""
    settings = spark_engine.resolve_settings(
        SparkSettings(master="local[*]", partitions=4),
        {"JOURNEYS_SPARK_MASTER": "spark://head:7077", "JOURNEYS_SPARK_PARTITIONS": "64",
         "JOURNEYS_SPARK_EXECUTOR_MEMORY": "8g"},
    )
    assert (settings.master, settings.partitions, settings.executor_memory) == ("spark://head:7077", 64, "8g")
    with pytest.raises(spark_engine.SparkEngineError, match="JOURNEYS_SPARK_PARTITIONS"):
        spark_engine.resolve_settings(None, {"JOURNEYS_SPARK_PARTITIONS": "many"})


def test_config_engine_and_spark_sections(tmp_path):
    """[engine] name and [spark] are read and checked; a bad value names the key."""
    base = (SAMPLE / "journeys.toml").read_text()
    good = copy_config(SAMPLE / "journeys.toml", tmp_path / "good")
    good.write_text(good.read_text() + '\n[engine]\nname = "spark"\n\n[spark]\nmaster = "local[2]"\n'
                    'driver_memory = "2g"\npartitions = 8\nscratch_dir = "scratch"\nconf = { "spark.sql.adaptive.enabled" = true }\n')
    config = load_config(good)
    assert config.engine == "spark"
    assert config.spark == SparkSettings(master="local[2]", driver_memory="2g", partitions=8,
                                         scratch_dir=good.parent / "scratch", conf=(("spark.sql.adaptive.enabled", "true"),))
    assert base  # the sample itself has neither section: local engine
    assert load_config(SAMPLE / "journeys.toml").engine == "local"
    for extra, key in [('[engine]\nname = "flink"\n', "engine.name"), ('[spark]\nexecutor_memory = "lots"\n', "spark.executor_memory"),
                       ("[spark]\npartitions = 0\n", "spark.partitions"), ('[spark]\nconf = { "sql.x" = "1" }\n', "spark.conf"),
                       ('[spark]\nscratch_dir = "s3://bucket/x"\n', "spark.scratch_dir")]:
        bad = copy_config(SAMPLE / "journeys.toml", tmp_path / key)
        bad.write_text(bad.read_text() + "\n" + extra)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(bad)


def test_partition_output_is_the_five_core_tables_tagged():
    """build_partition (what each Spark task runs) gives build_journeys' rows, each tagged with
    its table and partition, in the one output schema; an empty partition gives nothing."""
    events = events_frame([("a", "2026-01-01 10:00", "web", "page_view"), ("a", "2026-01-01 10:05", "web", "purchase"),
                           ("b", "2026-01-02 09:00", "store", "sale")])
    settings, as_of = BuildSettings(), datetime(2026, 3, 1, tzinfo=timezone.utc)
    out = spark_engine.output_schema()
    batches = list(spark_engine.build_partition(iter(events.to_arrow().to_batches(max_chunksize=2)), settings, as_of, out))
    assert all(b.schema == out for b in batches)
    got = pl.from_arrow(pa_table(batches))
    assert set(got["table"]) == set(spark_engine.TABLES) == {"steps", "sessions", "journeys", "visits"}
    assert set(got["part"]) == {0}
    expected = build_journeys(events, settings, as_of)
    for name, columns in spark_engine.core_schemas().items():
        part = got.filter(pl.col("table") == name).select(list(columns))
        assert_frame_equal(part, getattr(expected, name), check_row_order=False)
    assert list(spark_engine.build_partition(iter([]), settings, as_of, out)) == []


def pa_table(batches):
    import pyarrow as pa

    return pa.Table.from_batches(batches)


# --------------------------------------------------------------------------- end to end (JVM)


@pytest.mark.spark
@needs_spark
def test_local_session_listens_on_loopback_only(spark):
    """The session spark_session made for local[2]: driver on 127.0.0.1, no web UI, UTC."""
    assert spark.conf.get("spark.driver.host") == spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert spark.sparkContext.uiWebUrl is None
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.master == "local[2]"


def run_cli(config: Path, env: dict, *args: str) -> dict:
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config), "--json", *args],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.spark
@pytest.mark.slow
@needs_spark
def test_sample_spark_cli_equals_local(tmp_path, journeys_env):
    """`journeys run --engine spark` (the real CLI, its own local Spark) and `journeys run` on the
    bundled sample: every core and mart table equal, the same summary, no scratch left."""
    local_cfg = copy_config(SAMPLE / "journeys.toml", tmp_path / "local")
    spark_cfg = copy_config(SAMPLE / "journeys.toml", tmp_path / "spark")
    local = run_cli(local_cfg, journeys_env)
    spark = run_cli(spark_cfg, journeys_env, "--engine", "spark")
    # the same counts; only the number of buckets differs (Spark's partitions are its buckets)
    assert spark["build"].pop("buckets") >= 1 and local["build"].pop("buckets") >= 1
    assert spark["build"] == local["build"]
    n = assert_same_warehouse(load_config(local_cfg).warehouse, load_config(spark_cfg).warehouse)
    assert n >= 15
    assert not list(load_config(spark_cfg).versions_dir.glob(".spark-*"))


@pytest.fixture(scope="module")
def million(tmp_path_factory) -> Path:
    """About a million generated events (tests/synthetic_log.py)."""
    return write_log(tmp_path_factory.mktemp("million") / "log", events=1_000_000)


@pytest.mark.spark
@pytest.mark.slow
@needs_spark
def test_million_events_spark_equals_local(spark, million, tmp_path):
    """A million events on local[2]: the Spark engine's warehouse equals the local engine's,
    every core and mart table."""
    local_cfg = load_config(copy_config(million, tmp_path / "local"))
    spark_cfg = load_config(copy_config(million, tmp_path / "spark"))
    local = run_pipeline(local_cfg)
    result = run_pipeline(spark_cfg, engine="spark")
    assert result.counts["build"].pop("buckets") >= 1 and local.counts["build"].pop("buckets") >= 1
    assert result.counts["build"] == local.counts["build"]
    assert result.counts["ingest"]["loaded"] == 1_000_000
    assert_same_warehouse(local_cfg.warehouse, spark_cfg.warehouse)
    assert not list(spark_cfg.versions_dir.glob(".spark-*"))


@pytest.mark.spark
@needs_spark
def test_incremental_spark_run_equals_a_full_local_run(spark, tmp_path):
    """New files on an incremental Spark run: only the customers they touch go to Spark again
    (with their complete histories), and the warehouse equals a full local run of all files."""
    landing = tmp_path / "landing"
    write_sample(landing, customers=150, seed=3)
    later = [sorted((landing / "web").glob("*.jsonl"))[-1], sorted((landing / "call_center").glob("*.csv"))[-1]]
    held = tmp_path / "held"
    held.mkdir()
    for path in later:  # the last month arrives later
        shutil.move(path, held / path.name)
    shutil.copy(SAMPLE / "journeys.toml", landing / "journeys.toml")
    spark_cfg = load_config(copy_config(landing / "journeys.toml", tmp_path / "spark"))
    first = run_pipeline(spark_cfg, engine="spark")
    for path in later:
        shutil.move(held / path.name, path)
    spark_cfg = load_config(spark_cfg.path)
    second = run_pipeline(spark_cfg, engine="spark")
    assert second.counts["mode"] == "incremental"
    assert 0 < second.counts["build"]["customers_rebuilt"] <= first.counts["build"]["customers_rebuilt"]
    local_cfg = load_config(copy_config(landing / "journeys.toml", tmp_path / "local"))
    run_pipeline(local_cfg)
    assert_same_warehouse(local_cfg.warehouse, spark_cfg.warehouse)
