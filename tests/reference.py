"""A deliberately plain reference implementation of sessions, journeys, stages and marts.

Written from the rules in DESIGN.md (and the test brief), not from the pipeline's
code: plain loops over plain dicts, no Polars, no DuckDB. It is slow and only
meant for the tiny inputs of the tests, where it is the independent oracle the
vectorised Polars and the SQL are compared with.

Events are dicts with the canonical columns (event_id, customer_id, ts as an
aware datetime, channel, event_type, source, source_file, source_row,
properties as a JSON text). Rules are anything with the attributes of
`pipeline.config.StageRule` (id, stage, channel, event_type, properties).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import timedelta

KEY_SEP = "\x1f"
UNLABELLED = "unlabelled"
UNKNOWN_SEGMENT = "(unknown)"


# --------------------------------------------------------------------------- ordering


def order_key(event):
    """Time first; equal times by input position (source, file, row)."""
    return (event["ts"], event["source"], event["source_file"], event["source_row"])


def events_by_customer(events):
    """{customer_id: [events in order]}, customers sorted by id."""
    grouped = {}
    for event in events:
        grouped.setdefault(event["customer_id"], []).append(event)
    result = {}
    for customer in sorted(grouped):
        result[customer] = sorted(grouped[customer], key=order_key)
    return result


# --------------------------------------------------------------------------- stages


def property_text(value):
    """A JSON value as the text a rule compares with: strings as they are, others as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def glob_matches(text, pattern):
    """Whole-text glob match: '*' is any run of characters, '?' one character, all else literal."""
    if "*" not in pattern and "?" not in pattern:
        return text == pattern
    # can[i][j]: pattern[:i] matches text[:j]
    can = [[False] * (len(text) + 1) for _ in range(len(pattern) + 1)]
    can[0][0] = True
    for i in range(1, len(pattern) + 1):
        ch = pattern[i - 1]
        for j in range(0, len(text) + 1):
            if ch == "*":
                can[i][j] = can[i - 1][j] or (j > 0 and can[i][j - 1])
            elif j > 0 and (ch == "?" or ch == text[j - 1]):
                can[i][j] = can[i - 1][j - 1]
    return can[len(pattern)][len(text)]


def rule_matches(rule, event):
    if rule.channel:
        if event["channel"] not in rule.channel:
            return False
    if rule.event_type:
        found = False
        for pattern in rule.event_type:
            if glob_matches(event["event_type"], pattern):
                found = True
        if not found:
            return False
    if rule.properties:
        try:
            props = json.loads(event["properties"]) if event["properties"] else {}
        except ValueError:
            props = {}
        if not isinstance(props, dict):
            props = {}
        for key, allowed in rule.properties:
            if key not in props or props[key] is None:
                return False
            if property_text(props[key]) not in allowed:
                return False
    return True


def label(event, rules):
    """(stage, rule_id) of the first rule the event matches, else ('unlabelled', None)."""
    for rule in rules:
        if rule_matches(rule, event):
            return rule.stage, rule.id
    return UNLABELLED, None


def node_of(step, level):
    if level == "stage":
        return step["stage"]
    if level == "event_type":
        return step["event_type"]
    return step["channel"] + ":" + step["stage"]


# --------------------------------------------------------------------------- sessions and journeys


def seconds(value):
    return None if value is None else timedelta(seconds=value)


def build(
    events,
    as_of,
    inactivity_timeout=1800,
    max_length=86400,
    channel_timeouts=None,
    journey_timeout=30 * 86400,
    goal_stage="purchase",
    rules=(),
    level="stage",
):
    """Steps, sessions and journeys (lists of dicts) by the rules, one event at a time."""
    channel_timeouts = channel_timeouts or {}
    steps = []
    for customer, evs in events_by_customer(events).items():
        journey_key = None
        session_key = None
        session_start = None
        step_index = 0
        previous = None
        for event in evs:
            if previous is None:
                new_journey = True
                gap = None
            else:
                gap = event["ts"] - previous["ts"]
                new_journey = journey_timeout is not None and gap > seconds(journey_timeout)
            if event["channel"] in channel_timeouts:
                timeout = channel_timeouts[event["channel"]]
            else:
                timeout = inactivity_timeout
            new_session = new_journey
            if not new_session and timeout is not None and gap > seconds(timeout):
                new_session = True
            if not new_session and max_length is not None and event["ts"] - session_start > seconds(max_length):
                new_session = True
            if new_journey:
                journey_key = customer + KEY_SEP + event["event_id"]
                step_index = 0
            if new_session:
                session_key = customer + KEY_SEP + event["event_id"]
                session_start = event["ts"]
            step_index += 1
            stage, rule_id = label(event, rules)
            step = {
                "event_id": event["event_id"],
                "customer_id": customer,
                "journey_key": journey_key,
                "session_key": session_key,
                "step_index": step_index,
                "ts": event["ts"],
                "channel": event["channel"],
                "event_type": event["event_type"],
                "stage": stage,
                "rule_id": rule_id,
            }
            step["node"] = node_of(step, level)
            steps.append(step)
            previous = event

    sessions = {}
    for step in steps:
        key = step["session_key"]
        if key not in sessions:
            sessions[key] = {
                "session_key": key,
                "customer_id": step["customer_id"],
                "journey_key": step["journey_key"],
                "started_at": step["ts"],
                "ended_at": step["ts"],
                "events": 0,
                "channels": [],
            }
        s = sessions[key]
        s["started_at"] = min(s["started_at"], step["ts"])
        s["ended_at"] = max(s["ended_at"], step["ts"])
        s["events"] += 1
        if step["channel"] not in s["channels"]:
            s["channels"].append(step["channel"])
    for s in sessions.values():
        s["channels"] = sorted(s["channels"])

    journeys = {}
    for step in steps:
        key = step["journey_key"]
        if key not in journeys:
            journeys[key] = {
                "journey_key": key,
                "customer_id": step["customer_id"],
                "started_at": step["ts"],
                "ended_at": step["ts"],
                "session_keys": [],
                "events": 0,
                "converted_at": None,
                "channels": [],
            }
        j = journeys[key]
        j["started_at"] = min(j["started_at"], step["ts"])
        j["ended_at"] = max(j["ended_at"], step["ts"])
        j["events"] += 1
        if step["session_key"] not in j["session_keys"]:
            j["session_keys"].append(step["session_key"])
        if step["channel"] not in j["channels"]:
            j["channels"].append(step["channel"])
        if step["stage"] == goal_stage and j["converted_at"] is None:
            j["converted_at"] = step["ts"]
    by_journey = steps_by_journey(steps)
    for j in journeys.values():
        j["sessions"] = len(j.pop("session_keys"))
        j["channels"] = sorted(j["channels"])
        nodes = [visit["node"] for visit in visits_of(by_journey[j["journey_key"]])]
        j["visits"] = len(nodes)
        j["path"] = " > ".join(nodes)
        if j["converted_at"] is not None:
            j["status"] = "converted"
        elif journey_timeout is None or as_of - j["ended_at"] > seconds(journey_timeout):
            j["status"] = "dropped"
        else:
            j["status"] = "open"

    return {"steps": steps, "sessions": list(sessions.values()), "journeys": list(journeys.values())}


def hashed_id(prefix, key):
    """The warehouse id of a key: prefix + first 16 hex digits of its md5."""
    return prefix + hashlib.md5(key.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- graph: visits and moves


def steps_by_journey(steps):
    grouped = {}
    for step in steps:
        grouped.setdefault(step["journey_key"], []).append(step)
    for key in grouped:
        grouped[key] = sorted(grouped[key], key=lambda s: s["step_index"])
    return grouped


def visits_of(journey_steps):
    """Consecutive steps at the same node collapse into one visit."""
    visits = []
    for step in journey_steps:
        if visits and visits[-1]["node"] == step["node"]:
            visit = visits[-1]
            visit["left_at"] = step["ts"]
            visit["events"] += 1
        else:
            visits.append({"node": step["node"], "entered_at": step["ts"], "left_at": step["ts"], "events": 1})
    for visit in visits:
        visit["repeats"] = visit["events"] - 1
    return visits


def moves_of(journey_steps, status):
    """(from_node, to_node, wait_seconds) of a journey: START, visits, self-loops, terminal."""
    visits = visits_of(journey_steps)
    moves = [("START", visits[0]["node"], None)]
    for i in range(len(journey_steps) - 1):
        a = journey_steps[i]
        b = journey_steps[i + 1]
        wait = (b["ts"] - a["ts"]).total_seconds()
        # consecutive steps are either a repeat (self-loop) or the move from one
        # visit's last event to the next visit's first event: the wait is the same gap
        moves.append((a["node"], b["node"], wait))
    moves.append((visits[-1]["node"], status.upper(), None))
    return moves


# --------------------------------------------------------------------------- segments


def segments_of(customers, segments_long):
    """{customer: [(segment_key, segment_value), ...]} with ('all', 'all') and '(unknown)'."""
    segments_long = segments_long or []
    keys = sorted({k for _, k, _ in segments_long})
    known = {}
    for customer, key, value in segments_long:
        known[(customer, key)] = value
    result = {}
    for customer in customers:
        pairs = [("all", "all")]
        for key in keys:
            value = known.get((customer, key))
            pairs.append((key, value if value is not None else UNKNOWN_SEGMENT))
        result[customer] = pairs
    return result


# --------------------------------------------------------------------------- statistics


def quantile_cont(values, q):
    """Linear interpolation between closest ranks (as SQL quantile_cont); None if no values."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    position = q * (len(values) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    return values[lower] + (position - lower) * (values[upper] - values[lower])


def mean(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return sum(values) / len(values)


# --------------------------------------------------------------------------- marts


def marts(core, segments_long=None, stage_order=()):
    """transitions, stage_stats and funnel, as dicts keyed like the marts' grain."""
    journeys = {j["journey_key"]: j for j in core["journeys"]}
    grouped = steps_by_journey(core["steps"])
    segments = segments_of(sorted({j["customer_id"] for j in journeys.values()}), segments_long)

    transitions = {}
    stage_stats = {}
    funnel_counts = {}
    segment_journeys = {}
    for journey_key, journey_steps in grouped.items():
        journey = journeys[journey_key]
        customer = journey["customer_id"]
        status = journey["status"]
        moves = moves_of(journey_steps, status)
        visits = visits_of(journey_steps)

        reached = 0
        for step in journey_steps:
            if reached < len(stage_order) and step["stage"] == stage_order[reached]:
                reached += 1

        for seg in segments[customer]:
            segment_journeys[seg] = segment_journeys.get(seg, 0) + 1
            for k in range(1, reached + 1):
                funnel_counts[(seg, k)] = funnel_counts.get((seg, k), 0) + 1
            for from_node, to_node, wait in moves:
                key = (seg[0], seg[1], from_node, to_node)
                if key not in transitions:
                    transitions[key] = {"transitions": 0, "journeys": set(), "customers": set(), "waits": []}
                t = transitions[key]
                t["transitions"] += 1
                t["journeys"].add(journey_key)
                t["customers"].add(customer)
                if wait is not None:
                    t["waits"].append(wait)
            for i, visit in enumerate(visits):
                key = (seg[0], seg[1], visit["node"])
                if key not in stage_stats:
                    stage_stats[key] = {"journeys": set(), "visits": 0, "exits": 0, "drop_offs": 0, "dwells": [], "repeats": 0}
                s = stage_stats[key]
                s["journeys"].add(journey_key)
                s["visits"] += 1
                s["repeats"] += visit["repeats"]
                s["dwells"].append((visit["left_at"] - visit["entered_at"]).total_seconds())
                if i == len(visits) - 1:
                    s["exits"] += 1
                    if status == "dropped":
                        s["drop_offs"] += 1

    out_totals = {}
    for (seg_key, seg_value, from_node, _), t in transitions.items():
        out_totals[(seg_key, seg_value, from_node)] = out_totals.get((seg_key, seg_value, from_node), 0) + t["transitions"]
    transitions_out = {}
    for key, t in transitions.items():
        transitions_out[key] = {
            "transitions": t["transitions"],
            "journeys": len(t["journeys"]),
            "customers": len(t["customers"]),
            "probability": t["transitions"] / out_totals[key[:3]],
            "wait_p50_seconds": quantile_cont(t["waits"], 0.5),
            "wait_p90_seconds": quantile_cont(t["waits"], 0.9),
            "wait_mean_seconds": mean(t["waits"]),
        }

    stage_stats_out = {}
    for key, s in stage_stats.items():
        stage_stats_out[key] = {
            "journeys": len(s["journeys"]),
            "visits": s["visits"],
            "exits": s["exits"],
            "drop_offs": s["drop_offs"],
            "drop_off_rate": s["drop_offs"] / len(s["journeys"]),
            "dwell_p50_seconds": quantile_cont(s["dwells"], 0.5),
            "dwell_p90_seconds": quantile_cont(s["dwells"], 0.9),
            "repeats": s["repeats"],
        }

    funnel = {}
    for seg, total in segment_journeys.items():
        previous = total
        for k, stage in enumerate(stage_order, start=1):
            count = funnel_counts.get((seg, k), 0)
            funnel[(seg[0], seg[1], k)] = {
                "stage": stage,
                "journeys": count,
                "conversion_from_previous": count / previous if previous else None,
                "conversion_from_start": count / total if total else None,
            }
            previous = count

    return {"transitions": transitions_out, "stage_stats": stage_stats_out, "funnel": funnel}
