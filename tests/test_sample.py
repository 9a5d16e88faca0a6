"""Tests of pipeline.sample: determinism, layout, the recorded bad rows, and the planted truths.

The planted truths are checked by a plain-Python reference written here from the
definitions in docs (DESIGN.md) and the sample's journeys.toml, using no
pipeline code but the generator itself.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import json
import statistics
import tomllib
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from identity_reference import resolve

from pipeline.sample import MIN_CUSTOMERS, write_sample

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data" / "sample"
CONFIG = tomllib.loads((SAMPLE_DIR / "journeys.toml").read_text(encoding="utf-8"))
SOURCES = CONFIG["sources"]
JOURNEY_TIMEOUT = timedelta(days=30)
PERIOD = (datetime(2026, 6, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))
MIN_TIMESTAMP = datetime.fromisoformat(CONFIG["ingest"]["min_timestamp"])
MAX_TIMESTAMP = datetime.now(timezone.utc) + timedelta(days=1)  # ingest.max_future = "1d"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The sample as `make sample` writes it: 2000 customers, seed 7."""
    out = tmp_path_factory.mktemp("sample")
    return out, write_sample(out, customers=2000, seed=7)


@pytest.fixture(scope="module")
def loaded(sample: tuple[Path, dict]) -> Loaded:
    """The sample read by the reference reader."""
    return read_raw(sample[0])


def files_of(out: Path) -> dict[str, bytes]:
    """Every file under out, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- reference reader


@dataclasses.dataclass(frozen=True)
class Event:
    """A canonical event, as staging.events would hold it."""

    customer_id: str
    ts: datetime
    channel: str
    event_type: str
    order: tuple[int, str, int]  # source index, file, line: how events with equal times are ordered
    identifiers: tuple[tuple[str, str], ...] = ()  # (type, value) of the row's non-empty identifiers


@dataclasses.dataclass
class Loaded:
    """What the reference reader makes of the raw files."""

    events: list[Event]
    rejected: dict[tuple[str, int], str]  # (file, line) -> quarantine reason
    duplicates: dict[tuple[str, int], tuple[str, int]]  # (file, line) -> (file, line) of the first copy
    rows: dict[str, int]  # data rows per file


def parse_time(source: dict, row: dict) -> datetime:
    """The row's instant in UTC per the source's timestamp spec; ValueError if it does not parse."""
    spec = source["timestamp"]
    raw = row[spec["column"]]
    if spec["format"] == "iso":
        ts = datetime.fromisoformat(raw)
        if ts.tzinfo is None:
            raise ValueError(raw)
    elif spec["format"] == "epoch":
        ts = datetime.fromtimestamp(int(raw), timezone.utc)
    else:
        zone = ZoneInfo(row[spec["timezone_column"]] if "timezone_column" in spec else spec["timezone"])
        ts = datetime.strptime(raw, spec["format"]).replace(tzinfo=zone)
    return ts.astimezone(timezone.utc)


def check_row(source: dict, row: dict) -> str | None:
    """The quarantine reason of a parsed row, or None if it is a valid event."""
    customer_columns = source["customer_id"] if isinstance(source["customer_id"], list) else [source["customer_id"]]
    if not any(row.get(c) for c in customer_columns):
        return "missing_customer"
    if not row.get(source["event_type"]["column"]):
        return "missing_event_type"
    channel = source["channel"]
    if isinstance(channel, dict) and row[channel["column"]] not in CONFIG["project"]["channels"]:
        return "unknown_channel"
    zone_column = source["timestamp"].get("timezone_column")
    if zone_column:
        try:
            ZoneInfo(row[zone_column])
        except (ZoneInfoNotFoundError, ValueError):
            return "unknown_timezone"
    try:
        ts = parse_time(source, row)
    except (ValueError, OverflowError):
        return "unparseable_timestamp"
    if not MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP:
        return "timestamp_out_of_range"
    return None


def read_raw(out: Path) -> Loaded:
    """Read every source the way DESIGN.md describes ingest: each physical line is loaded, a duplicate or
    quarantined with a reason."""
    loaded = Loaded([], {}, {}, {})
    for index, source in enumerate(SOURCES):
        first_seen: dict[tuple, tuple[str, str, int]] = {}  # event id -> (line, file, line number)
        for path in sorted(out.glob(source["path"])):
            name = path.relative_to(out).as_posix()
            lines = path.read_text(encoding="utf-8").splitlines()
            header = None
            if source["format"] == "csv":
                header, lines = next(csv.reader([lines[0]], delimiter=source.get("delimiter", ","))), lines[1:]
            first_line = 1 if header is None else 2
            loaded.rows[name] = sum(1 for line in lines if line.strip())
            for number, line in enumerate(lines, first_line):
                where = (name, number)
                if header is None:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        row = None
                else:
                    fields = next(csv.reader([line], delimiter=source.get("delimiter", ",")))
                    row = dict(zip(header, fields)) if len(fields) == len(header) else None
                if not isinstance(row, dict):
                    loaded.rejected[where] = "malformed_line"
                    continue
                if reason := check_row(source, row):
                    loaded.rejected[where] = reason
                    continue
                key = tuple(row[c] for c in ([source["event_id"]] if "event_id" in source else source["natural_key"]))
                if key in first_seen:
                    if first_seen[key][0] == line:
                        loaded.duplicates[where] = first_seen[key][1:]
                    else:
                        loaded.rejected[where] = "duplicate_event_id"
                    continue
                first_seen[key] = (line, name, number)
                loaded.events.append(to_event(index, source, row, where))
    return stitch(out, loaded)


def stitch(out: Path, loaded: Loaded) -> Loaded:
    """Each event's customer after identity resolution over the events' identifiers and the identity maps
    of journeys.toml (the union-find reference of tests/identity_reference.py)."""
    identity = CONFIG.get("identity", {})
    map_rows = []
    for m in identity.get("maps", []):
        with open(out / m["path"], newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f, delimiter=m.get("delimiter", ",")):
                map_rows.append({t: r[c].strip() for t, c in m["identifiers"].items() if r[c].strip()})
    rows = [dict(e.identifiers) for e in loaded.events] + map_rows
    customers, _, _ = resolve(rows, identity.get("customer_type", "customer"), identity.get("exclusive_types"))
    loaded.events = [dataclasses.replace(e, customer_id=c) for e, c in zip(loaded.events, customers)]
    return loaded


def to_event(index: int, source: dict, row: dict, where: tuple[str, int]) -> Event:
    """A valid row as a canonical event."""
    columns = source["customer_id"] if isinstance(source["customer_id"], list) else [source["customer_id"]]
    customer = next(row[c] for c in columns if row.get(c))
    channel = source["channel"] if isinstance(source["channel"], str) else row[source["channel"]["column"]]
    event_type = (source["event_type"].get("prefix", "") + row[source["event_type"]["column"]]).lower()
    identifiers = tuple((t, row[c].strip()) for t, c in source.get("identifiers", {}).items() if (row.get(c) or "").strip())
    return Event(customer, parse_time(source, row), channel, event_type, (index, *where), identifiers)


# --------------------------------------------------------------------------- reference journeys and metrics


def stage_of(event: Event) -> str:
    """The stage of the first matching rule of journeys.toml, else unlabelled."""
    for rule in CONFIG["stages"]["rules"]:
        if event.channel in rule.get("channel", [event.channel]) and any(
            fnmatch.fnmatchcase(event.event_type, pattern) for pattern in rule.get("event_type", ["*"])
        ):
            return rule["stage"]
    return "unlabelled"


@dataclasses.dataclass
class Journey:
    """A journey at stage level."""

    customer_id: str
    steps: list[tuple[str, list[datetime]]]  # consecutive events of one stage collapsed: (stage, their times)
    status: str


def build_journeys(events: list[Event]) -> list[Journey]:
    """Order each customer's events, cut journeys at gaps over the timeout, collapse repeated stages, and
    give each journey its status as of the latest event."""
    as_of = max(e.ts for e in events)
    by_customer = defaultdict(list)
    for e in events:
        by_customer[e.customer_id].append(e)
    journeys = []
    for customer, own in by_customer.items():
        own.sort(key=lambda e: (e.ts, e.order))
        cuts = [0] + [i for i in range(1, len(own)) if own[i].ts - own[i - 1].ts > JOURNEY_TIMEOUT] + [len(own)]
        for start, end in zip(cuts, cuts[1:]):
            steps: list[tuple[str, list[datetime]]] = []
            for e in own[start:end]:
                stage = stage_of(e)
                if steps and steps[-1][0] == stage:
                    steps[-1][1].append(e.ts)
                else:
                    steps.append((stage, [e.ts]))
            if any(stage == CONFIG["journeys"]["goal_stage"] for stage, _ in steps):
                status = "converted"
            elif as_of - steps[-1][1][-1] > JOURNEY_TIMEOUT:
                status = "dropped"
            else:
                status = "open"
            journeys.append(Journey(customer, steps, status))
    return journeys


def edge_waits(journeys: list[Journey]) -> dict[tuple[str, str], tuple[set[int], list[float]]]:
    """Per edge between two stages: the journeys on it and every wait in seconds (last event of the step left
    to the first of the step entered; between consecutive events for a self-loop)."""
    edges: dict[tuple[str, str], tuple[set[int], list[float]]] = defaultdict(lambda: (set(), []))
    for n, journey in enumerate(journeys):
        for (stage, times), (next_stage, next_times) in zip(journey.steps, journey.steps[1:]):
            edges[stage, next_stage][0].add(n)
            edges[stage, next_stage][1].append((next_times[0] - times[-1]).total_seconds())
        for stage, times in journey.steps:
            for a, b in zip(times, times[1:]):
                edges[stage, stage][0].add(n)
                edges[stage, stage][1].append((b - a).total_seconds())
    return edges


def time_lost_ranking(journeys: list[Journey]) -> list[tuple[float, tuple[str, str], float]]:
    """Edges by time lost = distinct journeys x median wait, largest first: (time lost, edge, median)."""
    ranking = []
    for edge, (ids, waits) in edge_waits(journeys).items():
        median = statistics.median(waits)
        ranking.append((len(ids) * median, edge, median))
    return sorted(ranking, reverse=True)


def segment(journeys: list[Journey], customers: dict[str, dict], key: str, value: str) -> list[Journey]:
    """The journeys of customers with customers[key] == value."""
    return [j for j in journeys if customers.get(j.customer_id, {}).get(key) == value]


def read_customers(out: Path) -> dict[str, dict]:
    """customers.csv by customer id."""
    with open(out / CONFIG["customers"]["path"], newline="", encoding="utf-8") as f:
        return {row["customer_id"]: row for row in csv.DictReader(f)}


# --------------------------------------------------------------------------- tests


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    """Two runs with the same seed write byte-identical files; another seed writes other files."""
    write_sample(tmp_path / "a", customers=150, seed=3)
    write_sample(tmp_path / "b", customers=150, seed=3)
    write_sample(tmp_path / "c", customers=150, seed=4)
    a, b, c = (files_of(tmp_path / d) for d in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_too_few_customers_is_an_error(tmp_path: Path) -> None:
    """Below MIN_CUSTOMERS the defects cannot all be planted, and the generator says so."""
    with pytest.raises(ValueError, match="at least"):
        write_sample(tmp_path, customers=MIN_CUSTOMERS - 1)


def test_committed_sample_is_current(sample: tuple[Path, dict]) -> None:
    """data/sample holds exactly what write_sample(customers=2000, seed=7) writes."""
    fresh = files_of(sample[0])
    committed = {name: data for name, data in files_of(SAMPLE_DIR).items() if name != "journeys.toml"}
    assert committed.keys() == fresh.keys()
    assert [name for name in fresh if committed[name] != fresh[name]] == []


def test_files_match_the_config_and_ground_truth(sample: tuple[Path, dict], loaded: Loaded) -> None:
    """Every file named in the ground truth exists, is matched by its source's glob, and has that many data
    rows; no source glob matches a file the ground truth does not name."""
    out, truth = sample
    globbed = {p.relative_to(out).as_posix(): s["name"] for s in SOURCES for p in out.glob(s["path"])}
    assert globbed == {name: f["source"] for name, f in truth["files"].items()}
    assert loaded.rows == {name: f["rows"] for name, f in truth["files"].items()}
    assert truth["events"]["valid"] == sum(loaded.rows.values()) - len(truth["bad_rows"]) - len(truth["duplicates"])
    assert 18_000 <= truth["events"]["valid"] <= 23_000
    assert len(read_customers(out)) == truth["customers"] == 2000


def test_every_reason_is_planted_a_handful_of_times(sample: tuple[Path, dict]) -> None:
    """Each quarantine reason appears 3-6 times, and there are a few exact duplicates in several sources."""
    truth = sample[1]
    counts = defaultdict(int)
    for bad in truth["bad_rows"]:
        counts[bad["reason"]] += 1
    assert set(counts) == {"malformed_line", "missing_customer", "unparseable_timestamp", "timestamp_out_of_range",
                           "unknown_channel", "missing_event_type", "unknown_timezone", "duplicate_event_id"}
    assert all(3 <= n <= 6 for n in counts.values()), counts
    assert 3 <= len(truth["duplicates"]) <= 10
    assert {d["source"] for d in truth["duplicates"]} >= {"web", "store"}


def test_recorded_bad_rows_have_their_defect(sample: tuple[Path, dict]) -> None:
    """The line of each recorded bad row really has its defect, checked directly on the raw text."""
    out, truth = sample
    by_name = {s["name"]: s for s in SOURCES}
    for bad in truth["bad_rows"]:
        source = by_name[bad["source"]]
        lines = (out / bad["file"]).read_text(encoding="utf-8").splitlines()
        line = lines[bad["row"] - 1]
        if source["format"] == "jsonl":
            if bad["reason"] == "malformed_line":
                with pytest.raises(json.JSONDecodeError):
                    json.loads(line)
                continue
            row = json.loads(line)
        else:
            delimiter = source.get("delimiter", ",")
            header = next(csv.reader([lines[0]], delimiter=delimiter))
            fields = next(csv.reader([line], delimiter=delimiter))
            if bad["reason"] == "malformed_line":
                assert len(fields) != len(header), bad
                continue
            assert len(fields) == len(header), bad
            row = dict(zip(header, fields))
        reason = bad["reason"]
        if reason == "missing_customer":
            columns = source["customer_id"] if isinstance(source["customer_id"], list) else [source["customer_id"]]
            assert not any(row[c] for c in columns), bad
        elif reason == "missing_event_type":
            assert row[source["event_type"]["column"]] == "", bad
        elif reason == "unknown_channel":
            assert row[source["channel"]["column"]] not in CONFIG["project"]["channels"], bad
        elif reason == "unknown_timezone":
            with pytest.raises(ZoneInfoNotFoundError):
                ZoneInfo(row[source["timestamp"]["timezone_column"]])
        elif reason == "unparseable_timestamp":
            with pytest.raises(ValueError):
                parse_time(source, row)
        elif reason == "timestamp_out_of_range":
            assert parse_time(source, row).year in (1970, 2099), bad
        else:
            assert reason == "duplicate_event_id", bad
            id_columns = [source["event_id"]] if "event_id" in source else source["natural_key"]
            earlier = [r for r in rows_before(out, source, bad) if all(r[c] == row[c] for c in id_columns)]
            assert earlier and all(r != row for r in earlier), bad


def rows_before(out: Path, source: dict, bad: dict) -> list[dict]:
    """The well-formed rows of `source` before the bad row, in file and line order."""
    rows = []
    for path in sorted(out.glob(source["path"])):
        name = path.relative_to(out).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        if source["format"] == "jsonl":
            parsed = []
            for n, line in enumerate(lines, 1):
                try:
                    parsed.append((n, json.loads(line)))
                except json.JSONDecodeError:
                    pass
        else:
            reader = list(csv.reader(lines, delimiter=source.get("delimiter", ",")))
            parsed = [(n, dict(zip(reader[0], r))) for n, r in enumerate(reader[1:], 2) if len(r) == len(reader[0])]
        rows += [row for n, row in parsed if (name, n) < (bad["file"], bad["row"])]
    return rows


def test_reference_reader_rejects_exactly_the_recorded_rows(sample: tuple[Path, dict], loaded: Loaded) -> None:
    """An independent reader quarantines exactly the recorded bad rows, with the recorded reasons, and finds
    exactly the recorded duplicates; nothing else is wrong in the data."""
    truth = sample[1]
    assert loaded.rejected == {(b["file"], b["row"]): b["reason"] for b in truth["bad_rows"]}
    assert loaded.duplicates == {
        (d["file"], d["row"]): (d["duplicate_of"]["file"], d["duplicate_of"]["row"]) for d in truth["duplicates"]
    }
    assert len(loaded.events) == truth["events"]["valid"]


def test_events_are_realistic(sample: tuple[Path, dict], loaded: Loaded) -> None:
    """Valid events lie in the period; anonymous visitors (cookie only) make 5-10% of web events and only view
    pages; account_login appears and no rule labels it; no customer has two events at the same instant."""
    events = loaded.events
    assert all(PERIOD[0] <= e.ts < PERIOD[1] for e in events)
    web = [e for e in events if e.channel == "web"]
    anonymous = [e for e in web if e.customer_id.startswith("ck-")]
    assert 0.05 <= len(anonymous) / len(web) <= 0.10
    assert {e.event_type for e in anonymous} == {"page_view"}
    logins = [e for e in web if e.event_type == "account_login"]
    assert logins and {stage_of(e) for e in logins} == {"unlabelled"}
    seen = {(e.customer_id, e.ts) for e in events}
    assert len(seen) == len(events)


def test_journeys_and_statuses(sample: tuple[Path, dict], loaded: Loaded) -> None:
    """Each customer has 1-3 journeys; journey statuses as of the latest event are those of the ground truth,
    and most journeys are closed (converted or dropped) while some are still open."""
    out, truth = sample
    journeys = build_journeys(loaded.events)
    per_customer = defaultdict(int)
    for j in journeys:
        per_customer[j.customer_id] += 1
    customers = read_customers(out)
    assert {per_customer[c] for c in customers} <= {1, 2, 3}
    statuses = {s: sum(j.status == s for j in journeys) for s in ("converted", "dropped", "open")}
    assert truth["journeys"] == {"total": len(journeys), **statuses}
    assert 0.03 < statuses["open"] / len(journeys) < 0.15
    assert truth["as_of"] == max(e.ts for e in loaded.events).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_planted_bottleneck(sample: tuple[Path, dict], loaded: Loaded) -> None:
    """In region=south, consideration -> purchase is rank 1 by time lost, clearly ahead of rank 2, and its
    median wait is days: over 10x the median of every other region, which is under 6 hours."""
    out, truth = sample
    plant = truth["bottleneck"]
    journeys = build_journeys(loaded.events)
    customers = read_customers(out)
    edge = (plant["from_node"], plant["to_node"])
    ranking = time_lost_ranking(segment(journeys, customers, plant["segment_key"], plant["segment_value"]))
    (lost, top, slow_median), (runner_up, _, _) = ranking[0], ranking[1]
    assert top == edge
    assert lost > 1.5 * runner_up
    assert 4 * 86400 <= slow_median <= 8 * 86400
    for region in {c["region"] for c in customers.values()} - {plant["segment_value"]}:
        _, waits = edge_waits(segment(journeys, customers, "region", region))[edge]
        median = statistics.median(waits)
        assert median < 6 * 3600
        assert slow_median > 10 * median


def test_planted_drop_off(sample: tuple[Path, dict], loaded: Loaded) -> None:
    """In acquisition_channel=social, most journeys (>60%) are dropped at consideration, consideration is rank
    1 by drop-offs, and its drop-off rate is over 0.5 and over twice that of every other channel."""
    out, truth = sample
    plant = truth["drop_off"]
    journeys = build_journeys(loaded.events)
    customers = read_customers(out)

    def drop_offs(own: list[Journey]) -> tuple[dict[str, int], float]:
        """Dropped journeys by their last stage, and the drop-off rate at the planted node."""
        by_stage: dict[str, int] = defaultdict(int)
        for j in own:
            if j.status == "dropped":
                by_stage[j.steps[-1][0]] += 1
        reaching = sum(any(stage == plant["node"] for stage, _ in j.steps) for j in own)
        return by_stage, by_stage[plant["node"]] / reaching

    leaky = segment(journeys, customers, plant["segment_key"], plant["segment_value"])
    by_stage, rate = drop_offs(leaky)
    assert max(by_stage, key=by_stage.get) == plant["node"]
    assert by_stage[plant["node"]] > 0.6 * len(leaky)
    assert rate > 0.5
    for channel in {c[plant["segment_key"]] for c in customers.values()} - {plant["segment_value"]}:
        assert drop_offs(segment(journeys, customers, plant["segment_key"], channel))[1] < rate / 2
