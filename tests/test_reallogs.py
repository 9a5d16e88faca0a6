"""Agreement with pm4py on real public event logs (../shared/reallogs, see its README).

At graph level `event_type`, with no session split and one journey per case,
the edges of marts.transitions between activities are the directly-follows
graph (DFG) of process mining (DESIGN.md, "Transition graph and metrics"). Each
test runs the real `journeys run` on one log and checks, edge for edge and
count for count, that the warehouse agrees with `pm4py.discover_dfg` on the
same rows read independently with pandas: the DFG, START -> x (pm4py's start
activities) and x -> terminal (pm4py's end activities), per segment value
too, and that every row became one step of one journey per case.

The pipeline names nodes by event type in snake_case, so pm4py's activity
names go through `snake_case` below, written here independently of
pipeline/ingest.py.

pm4py's start/end activity statistics take each case's first/last row in
*frame* order (a groupby without a sort), while its DFG sorts the rows by
(case, time) itself. So the start/end reference is computed on a frame put in
time order first, ties broken by file position: the order of DESIGN.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import JOURNEYS_BIN, REALLOGS

pm4py = pytest.importorskip("pm4py")
pytestmark = pytest.mark.filterwarnings("ignore:Install the optional requirement:UserWarning")

TERMINALS = ("CONVERTED", "DROPPED", "OPEN")


# --------------------------------------------------------------------------- helpers


def snake_case(name: str) -> str:
    """Event name -> snake_case: split camelCase, lowercase, runs of non-alphanumerics -> '_', strip '_'."""
    split = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", split.lower()).strip("_")


def toml_str(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value)


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def write_config(tmp_path: Path, name: str, channels: list[str], source: str, customers: str = "") -> Path:
    """A journeys TOML for one real log: no session split, one journey per case, level event_type."""
    text = f"""
[project]
name = {toml_str(name)}
channels = {toml_list(channels)}

[output]
warehouse = "out/journeys.duckdb"
export_dir = "out/export"
graph_dir = "out/graph"

[[sources]]
{source.strip()}

{customers.strip()}

[sessions]
inactivity_timeout = "none"
max_length = "none"

[journeys]
timeout = "none"

[graph]
level = "event_type"
"""
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_journeys(config: Path, env: dict) -> dict:
    """`journeys run --config CONFIG --json` in a subprocess; exit 0 and its JSON summary."""
    proc = subprocess.run(
        [str(JOURNEYS_BIN), "run", "--config", str(config), "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, f"journeys run failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout)


class Warehouse:
    """Read-only view of a run's DuckDB file: the graph per segment, in pm4py's terms."""

    def __init__(self, path: Path):
        self.con = duckdb.connect(str(path), read_only=True)

    def close(self) -> None:
        self.con.close()

    def scalar(self, sql: str, params: list | None = None):
        return self.con.execute(sql, params or []).fetchall()[0][0]

    def edges(self, segment_key: str = "all", segment_value: str = "all") -> list[tuple[str, str, int]]:
        return self.con.execute(
            "select from_node, to_node, transitions from marts.transitions "
            "where level = 'event_type' and segment_key = ? and segment_value = ?",
            [segment_key, segment_value],
        ).fetchall()

    def graph(self, segment_key: str = "all", segment_value: str = "all") -> tuple[dict, dict, dict]:
        """(DFG, start counts, end counts) from marts.transitions of one segment value."""
        dfg: dict = {}
        starts: Counter = Counter()
        ends: Counter = Counter()
        for a, b, n in self.edges(segment_key, segment_value):
            if a == "START":
                assert b not in TERMINALS, f"empty journey START -> {b}"
                starts[b] += n
            elif b in TERMINALS:
                ends[a] += n
            else:
                assert (a, b) not in dfg
                dfg[(a, b)] = n
        return dfg, dict(starts), dict(ends)

    def segment_values(self, segment_key: str) -> list[str]:
        rows = self.con.execute(
            "select distinct segment_value from marts.transitions where segment_key = ? order by 1", [segment_key]
        ).fetchall()
        return [r[0] for r in rows]


def reference(df: pd.DataFrame, case: str, activity: str, timestamp: str) -> tuple[dict, dict, dict]:
    """(DFG, start activities, end activities) by pm4py, activity names mapped to snake_case.

    The DFG is pm4py.discover_dfg on the frame as given (file order; pm4py sorts
    by case and time itself). Start/end activities come from the frame ordered
    by (case, time, file position), and pm4py's DFG of that frame must be the same.
    """
    names = df[activity].unique().tolist()
    assert len({snake_case(a) for a in names}) == len(names), "snake_case merges two activities of this log"

    dfg, _, _ = pm4py.discover_dfg(df, activity_key=activity, timestamp_key=timestamp, case_id_key=case)
    ordered = (
        df.assign(_position=range(len(df)))
        .sort_values([case, timestamp, "_position"])
        .drop(columns="_position")
    )
    dfg_ordered, starts, ends = pm4py.discover_dfg(ordered, activity_key=activity, timestamp_key=timestamp, case_id_key=case)
    assert dict(dfg_ordered) == dict(dfg), "pm4py's DFG depends on the frame's row order"

    def snake_counts(counts: dict) -> dict:
        out: Counter = Counter()
        for key, n in counts.items():
            out[tuple(snake_case(a) for a in key) if isinstance(key, tuple) else snake_case(key)] += int(n)
        return dict(out)

    return snake_counts(dfg), snake_counts(starts), snake_counts(ends)


def assert_same_graph(got: tuple[dict, dict, dict], want: tuple[dict, dict, dict], label: str) -> None:
    """DFG, start and end counts equal; on failure show only the differences."""
    for part, g, w in zip(("directly-follows edges", "START -> x", "x -> terminal"), got, want):
        if g != w:
            diff = {k: (g.get(k), w.get(k)) for k in sorted(set(g) | set(w)) if g.get(k) != w.get(k)}
            pytest.fail(f"{label}: {part} differ from pm4py, (ours, pm4py): {diff}")


def check_counts(summary: dict, db: Warehouse, rows: int, cases: int, loaded: int | None = None) -> None:
    """Every row read is accounted for, every loaded row is one step, one journey per case."""
    ingest = summary["ingest"]
    loaded = rows if loaded is None else loaded
    assert ingest["rows_read"] == rows
    assert ingest["loaded"] == loaded
    assert ingest["rows_read"] == ingest["loaded"] + ingest["duplicates"] + ingest["quarantined"]
    assert db.scalar("select count(*) from staging.quarantine") == ingest["quarantined"]
    assert db.scalar("select count(*) from core.steps") == loaded
    assert db.scalar("select count(*) from core.journeys") == cases
    assert db.scalar("select count(distinct customer_id) from core.journeys") == cases
    assert summary["build"]["journeys"] == cases


# --------------------------------------------------------------------------- receipt.csv


def test_receipt_matches_pm4py_dfg(tmp_path, journeys_env):
    """receipt.csv (pm4py's CSV export, ISO times with offsets): marts.transitions at level
    event_type equals pm4py's DFG, start and end activities, for all and per case:department."""
    log = REALLOGS / "receipt.csv"
    source = f"""
name = "receipt"
path = {toml_str(str(log))}
format = "csv"
channel = {{ column = "case:channel" }}
customer_id = "case:concept:name"
natural_key = ["case:concept:name", "concept:instance", "concept:name", "time:timestamp"]
event_type = {{ column = "concept:name" }}
timestamp = {{ column = "time:timestamp", format = "iso" }}
properties = ["org:resource", "org:group"]
"""
    customers = f"""
[customers]
path = {toml_str(str(log))}
customer_id = "case:concept:name"
segments = ["case:department"]
"""
    config = write_config(tmp_path, "receipt", ["internet", "desk", "post", "e-mail", "intern"], source, customers)
    summary = run_journeys(config, journeys_env)

    df = pd.read_csv(log, dtype=str, keep_default_na=False, na_values=[""])
    df["time:timestamp"] = pd.to_datetime(df["time:timestamp"], utc=True, format="ISO8601")
    case, act, ts = "case:concept:name", "concept:name", "time:timestamp"
    # the customers file is the log itself: one department per case, or the segment is ill-defined
    assert df.groupby(case)["case:department"].nunique(dropna=False).max() == 1

    db = Warehouse(tmp_path / "out" / "journeys.duckdb")
    try:
        check_counts(summary, db, rows=len(df), cases=df[case].nunique())
        assert_same_graph(db.graph(), reference(df, case, act, ts), "receipt, all")
        departments = sorted(df["case:department"].unique())
        assert db.segment_values("case:department") == departments
        for dept in departments:
            part = df[df["case:department"] == dept]
            assert_same_graph(db.graph("case:department", dept), reference(part, case, act, ts), f"receipt, {dept}")
    finally:
        db.close()


# --------------------------------------------------------------------------- sepsis.csv


def test_sepsis_matches_pm4py_dfg(tmp_path, journeys_env):
    """sepsis.csv (';'-separated, naive '%Y/%m/%d %H:%M:%S.%f' times, case id 'NA'): the DFG,
    start and end activities equal pm4py's, for all and per age band.

    The file has one row that repeats the previous one exactly (case ES,
    Leucocytes, 2014/11/08 05:50). With every column as the natural key the
    pipeline counts it as a duplicate (DESIGN.md: same content = duplicate),
    so pm4py is given the frame without exact duplicate rows.
    """
    log = REALLOGS / "sepsis.csv"
    df = pd.read_csv(log, sep=";", dtype=str, keep_default_na=False, na_values=[""])
    case, act, ts = "Case ID", "Activity", "Complete Timestamp"
    assert (df[case] == "NA").sum() == 24, "the case id 'NA' must stay a real id"
    exact_duplicates = int(df.duplicated().sum())
    assert exact_duplicates == 1
    events = df.drop_duplicates().copy()
    events[ts] = pd.to_datetime(events[ts], format="%Y/%m/%d %H:%M:%S.%f", utc=True)

    # Age is set on each case's first row only: a customers file of age bands, one row per case
    ages = pd.to_numeric(df.groupby(case, sort=False)["Age"].first(), errors="coerce")
    bands = pd.cut(ages, bins=[0, 50, 70, 200], right=False, labels=["under_50", "50_69", "70_plus"])
    bands = bands.astype(str).where(ages.notna(), "unknown")
    customers_csv = tmp_path / "sepsis_customers.csv"
    pd.DataFrame({"case_id": bands.index, "age_band": bands.values}).to_csv(customers_csv, index=False)

    source = f"""
name = "sepsis"
path = {toml_str(str(log))}
format = "csv"
delimiter = ";"
channel = "hospital"
customer_id = "Case ID"
natural_key = {toml_list(list(df.columns))}
event_type = {{ column = "Activity" }}
timestamp = {{ column = "Complete Timestamp", format = "%Y/%m/%d %H:%M:%S.%f" }}
properties = ["org:group"]
"""
    customers = f"""
[customers]
path = {toml_str(str(customers_csv))}
customer_id = "case_id"
segments = ["age_band"]
"""
    config = write_config(tmp_path, "sepsis", ["hospital"], source, customers)
    summary = run_journeys(config, journeys_env)

    db = Warehouse(tmp_path / "out" / "journeys.duckdb")
    try:
        check_counts(summary, db, rows=len(df), cases=df[case].nunique(), loaded=len(events))
        assert summary["ingest"]["duplicates"] == exact_duplicates
        assert summary["ingest"]["quarantined"] == 0
        # our CSV reader keeps the text 'NA' as an id, not a null
        assert db.scalar("select count(*) from core.steps where customer_id = 'NA'") == 24
        assert db.scalar("select count(*) from core.journeys where customer_id = 'NA'") == 1
        # naive times are taken as UTC, milliseconds kept
        first = db.scalar("select min(ts) from staging.events")
        assert first == events[ts].min().to_pydatetime()

        assert_same_graph(db.graph(), reference(events, case, act, ts), "sepsis, all")
        by_case = bands.to_dict()
        assert db.segment_values("age_band") == sorted(set(by_case.values()))
        for band in sorted(set(by_case.values())):
            part = events[events[case].map(by_case) == band]
            assert_same_graph(db.graph("age_band", band), reference(part, case, act, ts), f"sepsis, age {band}")
    finally:
        db.close()


# --------------------------------------------------------------------------- XES logs


def xes_to_csv(name: str, tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """Read an XES log with pm4py and write it as CSV, with its XES position as event id.

    The position is the event id because an XES event has no id of its own and
    some events repeat another exactly (helpdesk: 127); pm4py counts each.
    """
    df = pm4py.read_xes(str(REALLOGS / f"{name}.xes.gz"), show_progress_bar=False)
    assert str(df["time:timestamp"].dtype).endswith("UTC]")
    df.insert(0, "xes_event", [f"e{i}" for i in range(len(df))])
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    return df, path


def xes_source(name: str, csv_path: Path) -> str:
    return f"""
name = {toml_str(name)}
path = {toml_str(str(csv_path))}
format = "csv"
channel = "backoffice"
event_id = "xes_event"
customer_id = "case:concept:name"
event_type = {{ column = "concept:name" }}
timestamp = {{ column = "time:timestamp", format = "iso" }}
properties = ["org:resource"]
"""


def test_helpdesk_matches_pm4py_dfg(tmp_path, journeys_env):
    """helpdesk.xes.gz (via pm4py.read_xes -> CSV; 130 same-time pairs): the DFG, start and
    end activities equal pm4py's on the same frame."""
    df, csv_path = xes_to_csv("helpdesk", tmp_path)
    assert len(df) == 21348
    config = write_config(tmp_path, "helpdesk", ["backoffice"], xes_source("helpdesk", csv_path))
    summary = run_journeys(config, journeys_env)
    case, act, ts = "case:concept:name", "concept:name", "time:timestamp"
    db = Warehouse(tmp_path / "out" / "journeys.duckdb")
    try:
        check_counts(summary, db, rows=len(df), cases=df[case].nunique())
        assert df[case].nunique() == 4580
        assert_same_graph(db.graph(), reference(df, case, act, ts), "helpdesk, all")
    finally:
        db.close()


def test_bpic2012_matches_pm4py_dfg(tmp_path, journeys_env):
    """bpic2012.xes.gz (262,200 events; 13,995 same-time consecutive pairs): the DFG, start
    and end activities equal pm4py's, for all and per requested-amount band."""
    df, csv_path = xes_to_csv("bpic2012", tmp_path)
    case, act, ts = "case:concept:name", "concept:name", "time:timestamp"
    assert len(df) == 262200
    assert df.groupby(case)["case:AMOUNT_REQ"].nunique().max() == 1

    amounts = pd.to_numeric(df.groupby(case, sort=False)["case:AMOUNT_REQ"].first())
    bands = pd.cut(amounts, bins=[-1, 5000, 15000, 10**12], labels=["small", "medium", "large"]).astype(str)
    customers_csv = tmp_path / "bpic2012_customers.csv"
    pd.DataFrame({"case_id": bands.index, "amount_band": bands.values}).to_csv(customers_csv, index=False)
    customers = f"""
[customers]
path = {toml_str(str(customers_csv))}
customer_id = "case_id"
segments = ["amount_band"]
"""
    config = write_config(tmp_path, "bpic2012", ["backoffice"], xes_source("bpic2012", csv_path), customers)
    summary = run_journeys(config, journeys_env)
    db = Warehouse(tmp_path / "out" / "journeys.duckdb")
    try:
        check_counts(summary, db, rows=len(df), cases=df[case].nunique())
        assert df[case].nunique() == 13087
        assert_same_graph(db.graph(), reference(df, case, act, ts), "bpic2012, all")
        by_case = bands.to_dict()
        assert db.segment_values("amount_band") == sorted(set(by_case.values()))
        for band in sorted(set(by_case.values())):
            part = df[df[case].map(by_case) == band]
            assert_same_graph(db.graph("amount_band", band), reference(part, case, act, ts), f"bpic2012, {band}")
    finally:
        db.close()
