"""Load and validate the TOML config: the typed settings every step reads.

Everything is checked up front. A problem raises :class:`ConfigError`, whose
message names the file, the line (where it can be found), the key and the fix,
so that `journeys` can stop with exit 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline import schema
from pipeline.warehouse import memory_limit_problem

DEFAULT_CHANNELS = ("web", "social", "call_center", "store", "email", "app")
FORMATS = ("csv", "jsonl", "parquet")
ENCODINGS = ("utf-8", "utf-16", "latin-1")  # what DuckDB's CSV reader decodes without extensions
TIME_FORMATS_HELP = "'iso', 'epoch', 'epoch_ms' or a strptime pattern such as '%Y-%m-%d %H:%M:%S'"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PSEUDONYM_KEY_ENV = "JOURNEYS_PSEUDONYM_KEY"  # default [privacy] key_env
PSEUDONYM_KEY_MIN_LENGTH = 16
ENGINES = ("local", "spark")  # [engine] name: where the build step's sessionize + label runs
_SPARK_MEMORY = re.compile(r"^[0-9]+[kmgt]?$")  # Spark's size syntax: 512m, 4g


class ConfigError(Exception):
    """A config or source problem the user must fix; the CLI exits 2 with this message."""


@dataclasses.dataclass(frozen=True)
class ColumnValue:
    """A value taken from a column (optionally prefixed) or a constant."""

    column: str | None = None
    value: str | None = None
    prefix: str = ""


@dataclasses.dataclass(frozen=True)
class TimestampSpec:
    column: str
    format: str = "iso"
    timezone: str | None = None
    timezone_column: str | None = None


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    path: str  # glob, absolute
    format: str
    channel: ColumnValue
    customer_id: tuple[str, ...]
    event_type: ColumnValue
    timestamp: TimestampSpec
    event_id: str | None = None
    natural_key: tuple[str, ...] = ()
    identifiers: tuple[tuple[str, str], ...] = ()  # (type, column)
    properties: tuple[str, ...] = ()
    delimiter: str = ","
    encoding: str = "utf-8"
    files: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        """Every raw column this source's mapping reads, in a stable order."""
        cols: list[str] = []
        for c in (
            *self.customer_id,
            self.event_id,
            *self.natural_key,
            self.event_type.column,
            self.channel.column,
            self.timestamp.column,
            self.timestamp.timezone_column,
            *(c for _, c in self.identifiers),
            *self.properties,
        ):
            if c and c not in cols:
                cols.append(c)
        return cols


@dataclasses.dataclass(frozen=True)
class StageRule:
    id: str
    stage: str
    channel: tuple[str, ...] = ()
    event_type: tuple[str, ...] = ()  # exact names or globs with * and ?
    properties: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclasses.dataclass(frozen=True)
class Customers:
    path: str
    customer_id: str
    segments: tuple[str, ...]
    delimiter: str = ","


@dataclasses.dataclass(frozen=True)
class IdentityMap:
    """An identity-map file ([[identity.maps]], e.g. a CRM export): each row links its identifiers."""

    name: str
    path: str  # absolute
    identifiers: tuple[tuple[str, str], ...]  # (type, column)
    delimiter: str = ","


@dataclasses.dataclass(frozen=True)
class SparkSettings:
    """[spark]: how `--engine spark` starts its session (docs/engines.md). None = not set here:
    the environment (JOURNEYS_SPARK_*), spark-submit or Spark's own default decides."""

    master: str | None = None  # local[*], spark://host:7077, yarn, k8s://...
    driver_memory: str | None = None  # 4g; the memory of local[*] runs
    executor_memory: str | None = None  # 8g; per executor on a cluster
    partitions: int | None = None  # customer partitions; default: about a million events each
    scratch_dir: Path | None = None  # staging and core Parquet; on a cluster a path every node sees
    conf: tuple[tuple[str, str], ...] = ()  # any other spark.* settings


VERSIONS = ".versions"  # the folder of versions beside the warehouse (Config.versions_dir)


@dataclasses.dataclass(frozen=True)
class Config:
    path: Path
    name: str
    channels: tuple[str, ...]
    sources: tuple[Source, ...]
    customers: Customers | None
    inactivity_timeout: int | None  # seconds; None = never split
    max_length: int | None
    channel_timeouts: tuple[tuple[str, int | None], ...]
    journey_timeout: int | None
    goal_stage: str
    as_of: datetime | None
    stage_order: tuple[str, ...]
    rules: tuple[StageRule, ...]
    level: str
    warehouse: Path
    export_dir: Path
    graph_dir: Path
    report: Path
    min_timestamp: datetime
    max_future: int
    funnel_stages: tuple[str, ...] = ()
    funnel_mode: str = "strict"  # strict: in order; any: in any order
    funnel_window: int | None = None  # seconds from the first funnel stage; None = the whole journey
    min_journeys: int = 30  # comparison cells with fewer journeys are suppressed
    alpha: float = 0.05  # significance level after Benjamini-Hochberg
    contact_channels: tuple[str, ...] = ("call_center",)
    contact_window: int = 7 * 86400
    top_edges: int | None = None  # readable graph: keep the top N out-edges per node, fold the rest
    min_transitions: int = 0  # readable graph: fold edges with fewer transitions
    pseudonymize: bool = False  # [privacy]: replace customer identifiers with keyed hashes
    key_env: str = PSEUDONYM_KEY_ENV  # the environment variable holding that key (never the key itself)
    customer_type: str = "customer"  # [identity]: the identifier type whose values are known customer ids
    exclusive_types: tuple[str, ...] | None = None  # types that may link one known customer only; None = every other type
    identity_maps: tuple[IdentityMap, ...] = ()
    anonymous: str = "keep"  # [identity]: "keep" anonymous customers' events in the journeys, or "exclude" (counted, left out)
    memory_limit: str | None = None  # [engine]: DuckDB's memory limit; None = warehouse.default_memory_limit()
    engine: str = "local"  # [engine] name: local (Polars in this process) or spark
    spark: SparkSettings = SparkSettings()
    text: str = dataclasses.field(repr=False, default="")

    @property
    def hash(self) -> str:
        """sha256 of the config file's bytes (and, when pseudonymizing, of an HMAC fingerprint of
        the key, never the key): a changed config or key makes the next run a full rebuild."""
        text = self.text
        if self.pseudonymize and os.environ.get(self.key_env):
            import hmac

            text += "\x1f" + hmac.new(os.environ[self.key_env].encode(), b"journeys-key-check", "sha256").hexdigest()
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def versions_dir(self) -> Path:
        """Beside the warehouse: one folder per published or running version (pipeline.run)."""
        return self.warehouse.parent / VERSIONS



# --------------------------------------------------------------------------- helpers


class _Reader:
    """Walks the parsed TOML and reports errors with file, line, key and fix."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, key: str, section: str | None = None) -> int | None:
        """Best-effort line number of `key` (after `section`'s header, if given)."""
        start = 0
        if section:
            pat = re.compile(r"^\s*\[\[?\s*" + re.escape(section) + r"\s*\]\]?\s*$")
            for i, line in enumerate(self.lines):
                if pat.match(line):
                    start = i
                    break
        leaf = key.split(".")[-1].split("[")[0]
        pat = re.compile(r"^\s*" + re.escape(leaf) + r"\s*=|[{,]\s*" + re.escape(leaf) + r"\s*=")
        for i in range(start, len(self.lines)):
            if pat.search(self.lines[i]):
                return i + 1
        return start + 1 if section else None

    def fail(self, key: str, problem: str, fix: str, section: str | None = None) -> ConfigError:
        line = self.line_of(key, section)
        where = f"{self.path}" + (f", line {line}" if line else "")
        return ConfigError(f"{where}: key '{key}': {problem}. Fix: {fix}")

    def check_keys(self, table: dict, allowed: set[str], where: str, section: str | None = None) -> None:
        for k in table:
            if k not in allowed:
                raise self.fail(
                    f"{where}.{k}" if where else k,
                    "unknown key",
                    f"remove it or use one of: {', '.join(sorted(allowed))}",
                    section,
                )


def _absolute(path: Path) -> Path:
    """An absolute, normalised path that does not follow symlinks (output paths are links
    into the published version, and must stay the paths the config names)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def parse_duration(value: Any) -> int | None:
    """'30m' -> 1800; 'none', 0 or False -> None (never split). Raises ValueError."""
    if value in (None, False, 0, "none", "0"):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(value)
    seconds = int(float(m.group(1)) * _UNITS[m.group(2)])
    return seconds or None


def _duration(r: _Reader, table: dict, key: str, default: Any, where: str, section: str | None) -> int | None:
    try:
        return parse_duration(table.get(key, default))
    except ValueError:
        raise r.fail(
            f"{where}.{key}",
            f"'{table.get(key)}' is not a duration",
            "write a number with a unit s, m, h or d (e.g. \"30m\", \"24h\", \"30d\"), or \"none\"",
            section,
        ) from None


def _int(r: _Reader, table: dict, key: str, default: int | None, section: str, minimum: int) -> int | None:
    value = table.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise r.fail(f"{section}.{key}", f"{value!r} is not a whole number >= {minimum}", f"write e.g. {key} = {max(minimum, 10)}", section)
    return value


def _strs(r: _Reader, value: Any, key: str, section: str | None) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise r.fail(key, f"expected a name or a list of names, got {value!r}", 'write e.g. "column" or ["a", "b"]', section)


def _column_value(r: _Reader, value: Any, key: str, section: str) -> ColumnValue:
    if isinstance(value, str):
        return ColumnValue(value=value) if key.endswith("channel") else ColumnValue(column=value)
    if isinstance(value, dict):
        r.check_keys(value, {"column", "value", "prefix"}, key, section)
        if ("column" in value) == ("value" in value):
            raise r.fail(key, "needs exactly one of 'column' or 'value'", f'write {key} = {{ column = "name" }} or {{ value = "constant" }}', section)
        return ColumnValue(column=value.get("column"), value=value.get("value"), prefix=str(value.get("prefix", "")))
    raise r.fail(key, f"expected a table, got {value!r}", f'write {key} = {{ column = "name" }}', section)


def _timestamp(value: Any) -> datetime:
    ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def pseudonym_key_problem(key_env: str) -> str | None:
    """What is wrong with the pseudonymization key in environment variable `key_env`, or None.
    The message never contains the key."""
    key = os.environ.get(key_env)
    if not key:
        return f"environment variable {key_env} is {'empty' if key == '' else 'not set'}, and privacy.pseudonymize = true needs the secret key there"
    if len(key) < PSEUDONYM_KEY_MIN_LENGTH:
        return f"the key in environment variable {key_env} has {len(key)} characters, fewer than {PSEUDONYM_KEY_MIN_LENGTH}"
    return None


def pseudonym_key_fix(key_env: str) -> str:
    return (
        f"set {key_env} to a secret of at least {PSEUDONYM_KEY_MIN_LENGTH} characters from your secret store "
        f"(e.g. export {key_env}=\"$(openssl rand -hex 32)\" once, then keep that value: another key gives other pseudonyms), "
        "or set privacy.pseudonymize = false"
    )


# --------------------------------------------------------------------------- load


def load_config(path: str | Path, check_files: bool = True) -> Config:
    """Read and validate a config file; raise ConfigError naming what to fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found. Fix: pass --config with the path of a journeys TOML file (the sample's is data/sample/journeys.toml)")
    text = path.read_text(encoding="utf-8-sig")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}. Fix: correct the syntax at that line") from None
    r = _Reader(path, text)
    base = path.parent
    r.check_keys(raw, {"project", "output", "ingest", "sources", "customers", "sessions", "journeys", "stages", "graph", "funnel", "comparison", "repeat_contacts", "privacy", "identity", "engine", "spark"}, "")

    project = raw.get("project", {})
    r.check_keys(project, {"name", "channels"}, "project", "project")
    channels = _strs(r, project.get("channels", list(DEFAULT_CHANNELS)), "project.channels", "project")

    output = raw.get("output", {})
    r.check_keys(output, {"warehouse", "export_dir", "graph_dir", "report"}, "output", "output")
    warehouse = _absolute(base / output.get("warehouse", "build/journeys.duckdb"))
    export_dir = _absolute(base / output.get("export_dir", "build/export"))
    graph_dir = _absolute(base / output.get("graph_dir", "build/graph"))
    report = _absolute(base / output["report"]) if "report" in output else warehouse.parent / "report.html"

    ingest = raw.get("ingest", {})
    r.check_keys(ingest, {"min_timestamp", "max_future"}, "ingest", "ingest")
    try:
        min_ts = _timestamp(ingest.get("min_timestamp", "2000-01-01T00:00:00Z"))
    except ValueError:
        raise r.fail("ingest.min_timestamp", "not an ISO timestamp", 'write e.g. "2000-01-01T00:00:00Z"', "ingest") from None
    max_future = _duration(r, ingest, "max_future", "1d", "ingest", "ingest") or 0

    if "sources" not in raw or not isinstance(raw["sources"], list) or not raw["sources"]:
        raise r.fail("sources", "no [[sources]] given", "add at least one [[sources]] table with name, path, format, channel, customer_id, event_type and timestamp")
    customer_type, exclusive_types, identity_maps, anonymous = _identity(r, raw.get("identity", {}), base, check_files)
    sources = []
    seen: set[str] = set()
    for i, s in enumerate(raw["sources"]):
        sources.append(_source(r, s, i, base, channels, seen, check_files, customer_type))

    customers = None
    if "customers" in raw:
        c = raw["customers"]
        r.check_keys(c, {"path", "customer_id", "segments", "delimiter"}, "customers", "customers")
        if "path" not in c:
            raise r.fail("customers.path", "missing", 'give the CSV of customers with their segment columns, e.g. path = "customers.csv"', "customers")
        cpath = (base / c["path"]).resolve()
        if check_files and not cpath.is_file():
            raise r.fail("customers.path", f"file {cpath} not found", "correct the path (relative to the config file) or remove [customers]", "customers")
        if len(str(c.get("delimiter", ","))) != 1:
            raise r.fail("customers.delimiter", f"{c.get('delimiter')!r} is not one character", 'write e.g. delimiter = ";"', "customers")
        customers = Customers(
            path=str(cpath),
            customer_id=str(c.get("customer_id", "customer_id")),
            segments=_strs(r, c.get("segments", []), "customers.segments", "customers") if c.get("segments") else (),
            delimiter=str(c.get("delimiter", ",")),
        )

    sess = raw.get("sessions", {})
    r.check_keys(sess, {"inactivity_timeout", "max_length", "channel_timeouts"}, "sessions", "sessions")
    inactivity = _duration(r, sess, "inactivity_timeout", "30m", "sessions", "sessions")
    max_length = _duration(r, sess, "max_length", "24h", "sessions", "sessions")
    ct = sess.get("channel_timeouts", {})
    channel_timeouts = []
    for ch in ct:
        if ch not in channels:
            raise r.fail(f"sessions.channel_timeouts.{ch}", "not a configured channel", f"use one of project.channels: {', '.join(channels)}", "sessions")
        channel_timeouts.append((ch, _duration(r, ct, ch, None, "sessions.channel_timeouts", "sessions")))

    jour = raw.get("journeys", {})
    r.check_keys(jour, {"timeout", "goal_stage", "as_of"}, "journeys", "journeys")
    journey_timeout = _duration(r, jour, "timeout", "30d", "journeys", "journeys")
    as_of = None
    if "as_of" in jour:
        try:
            as_of = _timestamp(jour["as_of"])
        except ValueError:
            raise r.fail("journeys.as_of", "not an ISO timestamp", 'write e.g. "2026-11-01T00:00:00Z"', "journeys") from None
    if journey_timeout is not None:
        for name, t in [("sessions.inactivity_timeout", inactivity), *((f"sessions.channel_timeouts.{c}", t) for c, t in channel_timeouts)]:
            if t is None or t > journey_timeout:
                raise r.fail(name, "is longer than journeys.timeout, so a journey could split inside a session", "make journeys.timeout at least as long as every session timeout", "sessions")

    stages = raw.get("stages", {})
    r.check_keys(stages, {"order", "rules"}, "stages", "stages")
    order = _strs(r, stages.get("order", list(schema.DEFAULT_STAGES)), "stages.order", "stages")
    goal = str(jour.get("goal_stage", "purchase"))
    if goal not in order:
        raise r.fail("journeys.goal_stage", f"'{goal}' is not in stages.order", f"use one of: {', '.join(order)}", "journeys")
    rules = []
    rule_ids: set[str] = set()
    for i, rule in enumerate(stages.get("rules", [])):
        key = f"stages.rules[{i}]"
        r.check_keys(rule, {"id", "stage", "channel", "event_type", "properties"}, key, "stages.rules")
        rid = str(rule.get("id", f"rule_{i + 1}"))
        if rid in rule_ids:
            raise r.fail(f"{key}.id", f"duplicate rule id '{rid}'", "give every rule its own id", "stages.rules")
        rule_ids.add(rid)
        if rule.get("stage") not in order:
            raise r.fail(f"{key}.stage", f"'{rule.get('stage')}' is not in stages.order", f"use one of: {', '.join(order)}", "stages.rules")
        rchan = _strs(r, rule["channel"], f"{key}.channel", "stages.rules") if "channel" in rule else ()
        for ch in rchan:
            if ch not in channels:
                raise r.fail(f"{key}.channel", f"'{ch}' is not a configured channel", f"use one of: {', '.join(channels)}", "stages.rules")
        props = tuple((k, _strs(r, v, f"{key}.properties.{k}", "stages.rules")) for k, v in rule.get("properties", {}).items())
        for k, _ in props:
            if not re.fullmatch(r"[A-Za-z0-9_]+", k):
                raise r.fail(f"{key}.properties", f"property name '{k}' is not a simple name", "use the property's name as kept in [[sources]] properties (letters, digits, _)", "stages.rules")
        rules.append(
            StageRule(
                id=rid,
                stage=rule["stage"],
                channel=rchan,
                event_type=_strs(r, rule["event_type"], f"{key}.event_type", "stages.rules") if "event_type" in rule else (),
                properties=props,
            )
        )

    graph = raw.get("graph", {})
    r.check_keys(graph, {"level", "top_edges", "min_transitions"}, "graph", "graph")
    level = str(graph.get("level", "stage"))
    if level not in schema.LEVELS:
        raise r.fail("graph.level", f"'{level}' is not a graph level", f"use one of: {', '.join(schema.LEVELS)}", "graph")
    top_edges = _int(r, graph, "top_edges", None, "graph", minimum=1)
    min_transitions = _int(r, graph, "min_transitions", 0, "graph", minimum=0)

    funnel = raw.get("funnel", {})
    r.check_keys(funnel, {"stages", "mode", "window"}, "funnel", "funnel")
    funnel_stages = _strs(r, funnel["stages"], "funnel.stages", "funnel") if "stages" in funnel else order
    for st in funnel_stages:
        if st not in order:
            raise r.fail("funnel.stages", f"'{st}' is not in stages.order", f"use stages of: {', '.join(order)}", "funnel")
    funnel_mode = str(funnel.get("mode", "strict"))
    if funnel_mode not in ("strict", "any"):
        raise r.fail("funnel.mode", f"'{funnel_mode}' is not a funnel mode", 'use "strict" (stages in order) or "any" (in any order)', "funnel")
    funnel_window = _duration(r, funnel, "window", "none", "funnel", "funnel")

    comparison = raw.get("comparison", {})
    r.check_keys(comparison, {"min_journeys", "alpha"}, "comparison", "comparison")
    min_journeys = _int(r, comparison, "min_journeys", 30, "comparison", minimum=1)
    alpha = comparison.get("alpha", 0.05)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise r.fail("comparison.alpha", f"{alpha!r} is not a level between 0 and 1", "write e.g. alpha = 0.05", "comparison")

    contacts = raw.get("repeat_contacts", {})
    r.check_keys(contacts, {"channels", "window"}, "repeat_contacts", "repeat_contacts")
    contact_channels = _strs(r, contacts["channels"], "repeat_contacts.channels", "repeat_contacts") if "channels" in contacts else tuple(c for c in ("call_center",) if c in channels)
    for ch in contact_channels:
        if ch not in channels:
            raise r.fail("repeat_contacts.channels", f"'{ch}' is not a configured channel", f"use one of: {', '.join(channels)}", "repeat_contacts")
    contact_window = _duration(r, contacts, "window", "7d", "repeat_contacts", "repeat_contacts")
    if contact_window is None:
        raise r.fail("repeat_contacts.window", "must be a duration", 'write e.g. window = "7d"', "repeat_contacts")

    privacy = raw.get("privacy", {})
    r.check_keys(privacy, {"pseudonymize", "key_env"}, "privacy", "privacy")
    pseudonymize = privacy.get("pseudonymize", False)
    if not isinstance(pseudonymize, bool):
        raise r.fail("privacy.pseudonymize", f"{pseudonymize!r} is not true or false", "write pseudonymize = true or pseudonymize = false", "privacy")
    key_env = privacy.get("key_env", PSEUDONYM_KEY_ENV)
    if not isinstance(key_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
        raise r.fail("privacy.key_env", f"{key_env!r} is not an environment variable name", f'write the name of the variable holding the key, e.g. key_env = "{PSEUDONYM_KEY_ENV}"', "privacy")
    if pseudonymize and check_files:
        problem = pseudonym_key_problem(key_env)
        if problem:
            raise r.fail("privacy.key_env", problem, pseudonym_key_fix(key_env), "privacy")

    engine_table = raw.get("engine", {})
    r.check_keys(engine_table, {"name", "memory_limit"}, "engine", "engine")
    memory_limit = engine_table.get("memory_limit")
    if memory_limit is not None and memory_limit_problem(memory_limit):
        raise r.fail("engine.memory_limit", memory_limit_problem(memory_limit), 'write a size, e.g. memory_limit = "4GiB"', "engine")
    engine = engine_table.get("name", "local")
    if engine not in ENGINES:
        raise r.fail("engine.name", f"{engine!r} is not an engine", f'use one of: {", ".join(ENGINES)}', "engine")
    spark = _spark(r, raw.get("spark", {}), base)

    return Config(
        path=path.resolve(),
        name=str(project.get("name", path.stem)),
        channels=channels,
        sources=tuple(sources),
        customers=customers,
        inactivity_timeout=inactivity,
        max_length=max_length,
        channel_timeouts=tuple(channel_timeouts),
        journey_timeout=journey_timeout,
        goal_stage=goal,
        as_of=as_of,
        stage_order=order,
        rules=tuple(rules),
        level=level,
        warehouse=warehouse,
        export_dir=export_dir,
        graph_dir=graph_dir,
        report=report,
        min_timestamp=min_ts,
        max_future=max_future,
        funnel_stages=funnel_stages,
        funnel_mode=funnel_mode,
        funnel_window=funnel_window,
        min_journeys=min_journeys,
        alpha=float(alpha),
        contact_channels=contact_channels,
        contact_window=contact_window,
        top_edges=top_edges,
        min_transitions=min_transitions,
        pseudonymize=pseudonymize,
        key_env=key_env,
        customer_type=customer_type,
        exclusive_types=exclusive_types,
        identity_maps=identity_maps,
        anonymous=anonymous,
        memory_limit=memory_limit,
        engine=engine,
        spark=spark,
        text=text,
    )


def _identity(r: _Reader, identity: Any, base: Path, check_files: bool) -> tuple[str, tuple[str, ...] | None, tuple[IdentityMap, ...], str]:
    """[identity]: the customer type, the exclusive types, the identity-map files and what to do with
    anonymous customers."""
    if not isinstance(identity, dict):
        raise r.fail("identity", "expected a table", "write an [identity] table (see docs/config.md)")
    r.check_keys(identity, {"customer_type", "exclusive_types", "maps", "anonymous"}, "identity", "identity")
    anonymous = identity.get("anonymous", "keep")
    if anonymous not in ("keep", "exclude"):
        raise r.fail("identity.anonymous", f"{anonymous!r} is not keep or exclude",
                     'write anonymous = "keep" (anonymous visitors are customers of their own) or "exclude" (counted, left out of the journeys)', "identity")
    customer_type = identity.get("customer_type", "customer")
    if not isinstance(customer_type, str) or not customer_type:
        raise r.fail("identity.customer_type", f"{customer_type!r} is not an identifier type", 'write the type whose values are customer ids, e.g. customer_type = "customer"', "identity")
    exclusive = None
    if "exclusive_types" in identity:
        exclusive = () if identity["exclusive_types"] == [] else _strs(r, identity["exclusive_types"], "identity.exclusive_types", "identity")
        if customer_type in exclusive:
            raise r.fail("identity.exclusive_types", f"'{customer_type}' is identity.customer_type, whose values are the customers themselves", "remove it from exclusive_types", "identity")
    maps = []
    names: set[str] = set()
    raw_maps = identity.get("maps", [])
    if not isinstance(raw_maps, list):
        raise r.fail("identity.maps", "expected an array of tables", "write one [[identity.maps]] table per identity-map file", "identity")
    for i, m in enumerate(raw_maps):
        key = f"identity.maps[{i}]"
        if not isinstance(m, dict):
            raise r.fail(key, "expected a table", "write one [[identity.maps]] table per identity-map file", "identity.maps")
        r.check_keys(m, {"name", "path", "identifiers", "delimiter"}, key, "identity.maps")
        for required in ("name", "path", "identifiers"):
            if required not in m:
                raise r.fail(f"{key}.{required}", "missing", f"add {required} to this [[identity.maps]] table (see docs/config.md)", "identity.maps")
        name = str(m["name"])
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or name in names:
            raise r.fail(f"{key}.name", f"'{name}' is not a unique simple name", "use letters, digits, _ or - and a different name per map", "identity.maps")
        names.add(name)
        mpath = (base / m["path"]).resolve()
        if check_files and not mpath.is_file():
            raise r.fail(f"{key}.path", f"file {mpath} not found", "correct the path (relative to the config file) or remove the map", "identity.maps")
        ids = m["identifiers"]
        if not isinstance(ids, dict) or len(ids) < 2 or not all(isinstance(v, str) and v for v in ids.values()):
            raise r.fail(f"{key}.identifiers", "expected a table of at least two type = \"column\" entries (a row links its identifiers)", 'write identifiers = { customer = "customer_id", phone = "phone" }', "identity.maps")
        delimiter = str(m.get("delimiter", ","))
        if len(delimiter) != 1:
            raise r.fail(f"{key}.delimiter", f"{delimiter!r} is not one character", 'write e.g. delimiter = ";"', "identity.maps")
        maps.append(IdentityMap(name=name, path=str(mpath), identifiers=tuple((str(k), v) for k, v in ids.items()), delimiter=delimiter))
    return customer_type, exclusive, tuple(maps), anonymous


def _with_customer_columns(identifiers: tuple[tuple[str, str], ...], customer_id: tuple[str, ...],
                           customer_type: str) -> tuple[tuple[str, str], ...]:
    """The source's identifiers plus every customer column they do not name, so that a row's customer
    value is always in `identifiers`, where identity resolution reads it: under `customer_type` when no
    identifier has that type yet, else under the column's own name (`<column>_column` if that is taken)."""
    out = list(identifiers)
    for column in customer_id:
        if column in {c for _, c in out}:
            continue
        types = {t for t, _ in out}
        out.append((customer_type if customer_type not in types else column if column not in types else f"{column}_column", column))
    return tuple(out)


def _spark(r: _Reader, table: dict, base: Path) -> SparkSettings:
    """[spark]: every key optional; checked here so a typo stops before Spark starts."""
    r.check_keys(table, {"master", "driver_memory", "executor_memory", "partitions", "scratch_dir", "conf"}, "spark", "spark")
    master = table.get("master")
    if master is not None and (not isinstance(master, str) or not master.strip()):
        raise r.fail("spark.master", f"{master!r} is not a Spark master URL", 'write e.g. master = "local[*]", "spark://host:7077" or "yarn"', "spark")
    memory = {}
    for key in ("driver_memory", "executor_memory"):
        value = table.get(key)
        if value is not None and not (isinstance(value, str) and _SPARK_MEMORY.match(value.lower())):
            raise r.fail(f"spark.{key}", f"{value!r} is not a Spark memory size", f'write e.g. {key} = "4g" (a number with k, m, g or t)', "spark")
        memory[key] = value
    conf = table.get("conf", {})
    if not isinstance(conf, dict) or not all(isinstance(k, str) and k.startswith("spark.") for k in conf):
        raise r.fail("spark.conf", "expected a table of spark.* settings", 'write e.g. conf = { "spark.sql.adaptive.enabled" = "true" }', "spark")
    scratch = table.get("scratch_dir")
    if scratch is not None and (not isinstance(scratch, str) or "://" in scratch):
        raise r.fail("spark.scratch_dir", f"{scratch!r} is not a folder path", "give a folder that the driver and every executor see (a local disk for local[*], a shared mount on a cluster)", "spark")
    return SparkSettings(
        master=master,
        partitions=_int(r, table, "partitions", None, "spark", minimum=1),
        scratch_dir=_absolute(base / scratch) if scratch else None,
        conf=tuple((k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in conf.items()),
        **memory,
    )


def _source(r: _Reader, s: dict, i: int, base: Path, channels: tuple[str, ...], seen: set[str], check_files: bool,
            customer_type: str = "customer") -> Source:
    key = f"sources[{i}]"
    sec = "sources"
    r.check_keys(
        s,
        {"name", "path", "format", "channel", "customer_id", "event_type", "timestamp", "event_id", "natural_key", "identifiers", "properties", "delimiter", "encoding"},
        key,
        sec,
    )
    for required in ("name", "path", "format", "channel", "customer_id", "event_type", "timestamp"):
        if required not in s:
            raise r.fail(f"{key}.{required}", "missing", f"add {required} to this [[sources]] table (see docs/config.md)", sec)
    name = str(s["name"])
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or name in seen:
        raise r.fail(f"{key}.name", f"'{name}' is not a unique simple name", "use letters, digits, _ or - and a different name per source", sec)
    seen.add(name)
    key = f"sources.{name}"
    fmt = str(s["format"])
    if fmt not in FORMATS:
        raise r.fail(f"{key}.format", f"'{fmt}' is not supported", f"use one of: {', '.join(FORMATS)}", sec)
    pattern = str((base / s["path"]).resolve()) if not Path(s["path"]).is_absolute() else str(s["path"])
    files = tuple(sorted(glob.glob(pattern)))
    if check_files and not files:
        raise r.fail(f"{key}.path", f"no file matches {pattern}", "correct the glob (relative to the config file) or remove the source", sec)
    channel = _column_value(r, s["channel"], f"{key}.channel", sec)
    if channel.value is not None and channel.value.lower() not in channels:
        raise r.fail(f"{key}.channel", f"'{channel.value}' is not in project.channels", f"use one of: {', '.join(channels)}, or add it to project.channels", sec)
    ts = s["timestamp"]
    if not isinstance(ts, dict) or "column" not in ts:
        raise r.fail(f"{key}.timestamp", "needs a column", 'write timestamp = { column = "ts", format = "iso" }', sec)
    r.check_keys(ts, {"column", "format", "timezone", "timezone_column"}, f"{key}.timestamp", sec)
    tspec = TimestampSpec(
        column=str(ts["column"]),
        format=str(ts.get("format", "iso")),
        timezone=ts.get("timezone"),
        timezone_column=ts.get("timezone_column"),
    )
    if tspec.format not in ("iso", "epoch", "epoch_ms") and "%" not in tspec.format:
        raise r.fail(f"{key}.timestamp.format", f"'{tspec.format}' is not a time format", f"use {TIME_FORMATS_HELP}", sec)
    if tspec.timezone and tspec.timezone_column:
        raise r.fail(f"{key}.timestamp.timezone", "both timezone and timezone_column are set", "keep one: a fixed zone for the source, or a column holding each row's zone", sec)
    if tspec.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tspec.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise r.fail(f"{key}.timestamp.timezone", f"'{tspec.timezone}' is not an IANA time zone", 'use a name such as "Europe/Paris" or "UTC"', sec) from None
    event_id = s.get("event_id")
    natural_key = _strs(r, s["natural_key"], f"{key}.natural_key", sec) if "natural_key" in s else ()
    identifiers = s.get("identifiers", {})
    if not isinstance(identifiers, dict):
        raise r.fail(f"{key}.identifiers", "expected a table of type = column", 'write identifiers = { cookie = "cookie_id", customer = "user_id" }', sec)
    delimiter = str(s.get("delimiter", ","))
    if len(delimiter) != 1:
        raise r.fail(f"{key}.delimiter", f"{delimiter!r} is not one character", 'write e.g. delimiter = ";"', sec)
    encoding = str(s.get("encoding", "utf-8")).lower().replace("_", "-")
    if encoding not in ENCODINGS:
        raise r.fail(f"{key}.encoding", f"'{encoding}' is not a supported encoding", f"use one of: {', '.join(ENCODINGS)}, or re-save the files as UTF-8", sec)
    return Source(
        name=name,
        path=pattern,
        format=fmt,
        channel=channel,
        customer_id=_strs(r, s["customer_id"], f"{key}.customer_id", sec),
        event_type=_column_value(r, s["event_type"], f"{key}.event_type", sec),
        timestamp=tspec,
        event_id=str(event_id) if event_id else None,
        natural_key=natural_key,
        identifiers=_with_customer_columns(tuple((str(k), str(v)) for k, v in identifiers.items()),
                                           _strs(r, s["customer_id"], f"{key}.customer_id", sec), customer_type),
        properties=_strs(r, s["properties"], f"{key}.properties", sec) if s.get("properties") else (),
        delimiter=delimiter,
        encoding=encoding,
        files=files,
    )
