"""Canonical names and types: the one source of truth for columns and vocabularies.

The DDL in sql/ and the Polars schemas here describe the same tables; the tests
check that they agree.
"""

from __future__ import annotations

import polars as pl

DEFAULT_STAGES = ("awareness", "consideration", "purchase", "retention", "loyalty", "advocacy")
UNLABELLED = "unlabelled"
LEVELS = ("stage", "event_type", "channel:stage")

START = "START"
CONVERTED = "CONVERTED"
DROPPED = "DROPPED"
OPEN = "OPEN"
TERMINALS = (CONVERTED, DROPPED, OPEN)
STATUSES = ("converted", "dropped", "open")

ALL = "all"  # segment_key and segment_value of everyone together
UNKNOWN_SEGMENT = "(unknown)"  # segment value of a customer missing from the customers file

# Why a raw row could not become a canonical event (staging.quarantine.reason).
QUARANTINE_REASONS = {
    "malformed_line": "the line is not valid JSON, or a CSV line has too few or too many fields",
    "missing_customer": "every configured customer column is empty",
    "missing_event_type": "the event type column is empty",
    "unparseable_timestamp": "the timestamp does not match the configured format",
    "unknown_timezone": "the row's time zone is not an IANA zone name",
    "timestamp_out_of_range": "the time is before ingest.min_timestamp or after the run start plus ingest.max_future",
    "unknown_channel": "the channel is not in project.channels",
    "duplicate_event_id": "an earlier row has the same event id but different content",
}

# Input of the sessionize + label step: staging.events, the columns it reads.
EVENTS_SCHEMA = {
    "event_id": pl.String,
    "customer_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "channel": pl.String,
    "event_type": pl.String,
    "source": pl.String,
    "source_file": pl.String,
    "source_row": pl.Int64,
    "properties": pl.String,
}
