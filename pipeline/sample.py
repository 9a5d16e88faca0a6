"""Synthetic raw touchpoint data with planted, known truths (`journeys sample`).

:func:`write_sample` writes the raw files of five channel systems, laid out
exactly as ``data/sample/journeys.toml`` reads them, plus ``customers.csv`` and
``ground_truth.json``:

================================  ===============================================
``web/clickstream-2026-MM.jsonl``  one JSON hit per line, ISO time with the
                                   device's UTC offset, milliseconds
``social/social_export.csv``       ``created_time`` in Unix seconds
``call_center/calls_2026MM.csv``   ``;``-separated, local wall time plus ``tz``
``store/pos_receipts.csv``         Paris wall time, day first, no event id
``email/email_events.csv``         ISO UTC, ``medium`` email or app
================================  ===============================================

Customers go through 1-3 journeys, more than the 30-day journey timeout apart:
awareness -> consideration -> purchase, then maybe retention, loyalty and
advocacy; many stop before purchase. Anonymous web visitors only view pages.
Planted, and recorded in the ground truth:

* a bottleneck: in region ``south`` payment clears 4-8 days after checkout, so
  the wait consideration -> purchase is days there and minutes elsewhere;
* a drop-off: most journeys of customers acquired on social stop at
  consideration;
* a handful of bad rows of every quarantine reason, and a few rows repeated
  byte for byte, by file and physical line; all on customers outside both
  plants, so that neither plant depends on how they are handled;
* identities to stitch (``identity`` in the ground truth): customers who browse
  anonymously on a cookie until they log in on it, customers with two cookies,
  customers whose calls carry only a phone and whose receipts carry only a
  loyalty card (both on file in the CRM export ``crm/crm_export.csv``), and a
  shared device: one cookie on which two customers are logged in, which must be
  reported as a conflict and join nobody. Phones that two customers share by
  chance are shared identifiers too.

The same seed writes byte-identical files. Customers and ids are drawn with
numpy; events are built journey by journey, session by session, because each
session's time depends on where the one before it ended.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import io
import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PERIOD_START = datetime(2026, 6, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)
MONTHS = (6, 7, 8, 9, 10)
MIN_CUSTOMERS = 100  # fewer leaves some monthly files too thin to plant every defect in

REGIONS = ("north", "south", "east", "west")
TIERS = ("basic", "plus", "premium")
ACQUISITION_CHANNELS = ("web", "social", "store", "referral")

# The planted truths.
SLOW_REGION = "south"  # consideration -> purchase waits SLOW_PAYMENT_DAYS here
SLOW_PAYMENT_DAYS = (4, 8)
LEAKY_CHANNEL = "social"  # customers acquired here mostly drop at consideration

# Where journeys lie in the period. Closed journeys end before CLOSED_BY, well
# over the 30-day timeout before the last events, so they count as converted or
# dropped; the open ones of OPEN_SHARE of the customers start from OPEN_FROM.
JOURNEYS_PER_CUSTOMER = (1, 2, 3)
JOURNEYS_PER_CUSTOMER_WEIGHTS = (0.5, 0.33, 0.17)
JOURNEY_GAP_DAYS = (35, 60)
FIRST_START_SPREAD_DAYS = 96
CLOSED_BY = datetime(2026, 9, 22, tzinfo=UTC)
OPEN_SHARE = 0.10
OPEN_FROM = date(2026, 10, 3)
OPEN_SPREAD_DAYS = 24
LAST_SESSION_AT = datetime(2026, 10, 31, 21, 0, tzinfo=UTC)
ANONYMOUS_PER_CUSTOMER = 0.18

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
JOURNEY_TIMEOUT_MS = 30 * DAY_MS  # journeys.timeout of the sample's config
MIN_SESSION_GAP_MS = 40 * MINUTE_MS  # over the 30-minute inactivity timeout
SAME_DAY_SPREAD_MS = 4 * HOUR_MS + 20 * MINUTE_MS

SITE = "https://shop.example.com"
BROWSE_PATHS = ("/", "/new-in", "/sale", "/c/shoes", "/c/bags", "/c/outdoor", "/c/home", "/stores",
                "/blog/summer-looks", "/help/delivery")
NAMES = ("anna", "ben", "chloe", "david", "elif", "farid", "greta", "hugo", "ines", "jonas", "kemal",
         "lena", "marco", "nora", "oskar", "paula", "quentin", "rosa", "sami", "tara", "umut", "vera",
         "wim", "xenia", "yusuf", "zoe")
CAMPAIGNS = {
    6: ("summer_sale_2026", "new_in_june"),
    7: ("summer_sale_2026", "july_picks"),
    8: ("Back to school, part 1", "august_outdoor"),
    9: ("Back to school, part 2", "autumn_preview"),
    10: ("autumn_collection", "loyalty_double_points"),
}
AGENTS = 40

SOCIAL_COLUMNS = ("interaction_id", "platform", "handle", "customer_ref", "action", "created_time")
CALL_COLUMNS = ("call_id", "customer_number", "phone", "call_start", "call_end", "tz", "reason_code",
                "agent_id", "outcome")
STORE_COLUMNS = ("store_id", "receipt_no", "receipt_type", "amount", "currency", "loyalty_card",
                 "customer_no", "purchased_at")
EMAIL_COLUMNS = ("message_event_id", "recipient_id", "campaign", "event", "medium", "event_time")
CUSTOMER_COLUMNS = ("customer_id", "region", "tier", "acquisition_channel", "signup_date")
CRM_COLUMNS = ("customer_id", "email", "phone", "loyalty_card")

# The planted identities (drawn with their own random stream, so nothing else moves).
ANONYMOUS_UNTIL_LOGIN_SHARE = 0.6  # of customers with a cookie whose first login comes after other hits
PHONE_ONLY_SHARE = 0.25  # of customers with calls and a phone of their own: the call center records only the phone
CARD_ONLY_SHARE = 0.3  # of customers with receipts: the till records only the loyalty card


# --------------------------------------------------------------------------- building blocks


@dataclasses.dataclass(frozen=True)
class _Mix:
    """A discrete distribution: options and their weights."""

    options: tuple[Any, ...]
    weights: tuple[float, ...]

    @functools.cached_property
    def cumulative(self) -> tuple[float, ...]:
        """The running sums of the weights."""
        return tuple(accumulate(self.weights))

    def draw(self, rng: np.random.Generator) -> Any:
        """One option, drawn with the weights."""
        return self.options[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


JOURNEY_OUTCOMES = {  # the last stage a journey reaches: it converts when that is purchase
    "web": _Mix(("awareness", "consideration", "purchase"), (0.25, 0.20, 0.55)),
    "social": _Mix(("awareness", "consideration", "purchase"), (0.07, 0.78, 0.15)),
    "store": _Mix(("awareness", "consideration", "purchase"), (0.25, 0.20, 0.55)),
    "referral": _Mix(("awareness", "consideration", "purchase"), (0.20, 0.20, 0.60)),
}
AWARENESS_SESSIONS = {  # by acquisition channel
    "web": _Mix(("browse", "social", "email"), (0.60, 0.15, 0.25)),
    "social": _Mix(("browse", "social", "email"), (0.30, 0.55, 0.15)),
    "store": _Mix(("browse", "social", "email"), (0.45, 0.15, 0.40)),
    "referral": _Mix(("browse", "social", "email"), (0.60, 0.15, 0.25)),
}
CONSIDERATION_SESSIONS = {
    "web": _Mix(("shop", "talk", "presale"), (0.65, 0.20, 0.15)),
    "social": _Mix(("shop", "talk", "presale"), (0.40, 0.45, 0.15)),
    "store": _Mix(("shop", "talk", "presale"), (0.65, 0.20, 0.15)),
    "referral": _Mix(("shop", "talk", "presale"), (0.65, 0.20, 0.15)),
}
PAGES_PER_VISIT = _Mix((1, 2, 3, 4), (0.30, 0.30, 0.25, 0.15))
AWARENESS_SESSION_COUNT = _Mix((1, 2), (0.55, 0.45))
CONSIDERATION_SESSION_COUNT = _Mix((1, 2, 3), (0.45, 0.35, 0.20))
ABANDONED_CART_SHARE = 0.3  # of journeys that drop at consideration, those that leave a cart
STORE_PURCHASE_SHARE = 0.35  # outside the slow region: paid at collection in a store, same day
SLOW_STORE_PURCHASE_SHARE = 0.45
EMAIL_CLICK_SHARE = 0.5
LOGIN_SHARE = 0.12  # of browse sessions with several pages
CART_LOGIN_SHARE = 0.3
AFTER_PURCHASE = (("retention", 0.35), ("loyalty", 0.25), ("advocacy", 0.20))
DAYS_BETWEEN_SESSIONS = _Mix((0, 1, 2, 3, 5, 7), (0.35, 0.30, 0.15, 0.10, 0.05, 0.05))
DAYS_AFTER_PURCHASE = _Mix((0, 1, 2, 3), (0.30, 0.35, 0.20, 0.15))
REFERRERS = _Mix(("https://www.google.com/", "https://www.instagram.com/", "https://www.facebook.com/",
                  "https://news.example-mail.com/", None), (0.35, 0.15, 0.10, 0.10, 0.30))
SERVICE_REASONS = _Mix(("ORDER_STATUS", "COMPLAINT", "RETURN", "TECH_SUPPORT"), (0.35, 0.20, 0.15, 0.30))
CALL_OUTCOMES = _Mix(("resolved", "escalated", "callback", "abandoned"), (0.70, 0.10, 0.12, 0.08))
PLATFORMS = _Mix(("instagram", "facebook", "x", "tiktok"), (0.40, 0.30, 0.10, 0.20))


@dataclasses.dataclass(frozen=True)
class _Clock:
    """When a channel's sessions start: local opening hours in a zone, and the resolution its system records."""

    zone: str
    opens_minute: int
    closes_minute: int
    step_ms: int

    def local(self, at: int) -> datetime:
        """The instant `at` (UTC ms) as wall time in this clock's zone."""
        return _from_ms(at).astimezone(ZoneInfo(self.zone))

    def is_open(self, at: int) -> bool:
        """Whether the instant `at` falls in the opening hours."""
        wall = self.local(at)
        return self.opens_minute <= wall.hour * 60 + wall.minute < self.closes_minute

    def on_day(self, rng: np.random.Generator, day: date) -> int:
        """A random instant (UTC ms) in the opening hours of local `day`, at the clock's resolution."""
        into_day = int(rng.integers(self.opens_minute * MINUTE_MS, self.closes_minute * MINUTE_MS))
        wall = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(self.zone)) + timedelta(milliseconds=into_day)
        return _ceil(_to_ms(wall), self.step_ms)


WEB = _Clock("UTC", 6 * 60, 21 * 60 + 30, 1)
SOCIAL = _Clock("UTC", 7 * 60, 22 * 60, 1000)
EMAIL = _Clock("UTC", 6 * 60, 20 * 60, 1000)
STORE = _Clock("Europe/Paris", 10 * 60, 19 * 60, MINUTE_MS)
REGION_CALL_ZONES = {"north": "Europe/London", "south": "Europe/Berlin", "east": "Europe/Berlin",
                     "west": "America/New_York"}
CALL_CLOCKS = {zone: _Clock(zone, 8 * 60 + 30, 18 * 60, 1000) for zone in REGION_CALL_ZONES.values()}
REGION_OFFSETS = {"north": 60, "south": 120, "east": 120, "west": -240}  # device clocks, minutes east of UTC
UTC_DEVICE_SHARE = 0.15


def _to_ms(moment: datetime) -> int:
    """An aware datetime as integer milliseconds since the Unix epoch."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _from_ms(at: int) -> datetime:
    """Milliseconds since the Unix epoch as an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=at)


def _ceil(at: int, step: int) -> int:
    """`at` rounded up to a multiple of `step`."""
    return -(-at // step) * step


class _Ids:
    """Unique, random-looking ids: an affine bijection of a counter modulo base**digits, as text."""

    def __init__(self, rng: np.random.Generator, prefix: str, digits: int, base: int = 16):
        self.prefix, self.digits, self.base = prefix, digits, base
        self.modulus = base**digits
        multiplier = _below(rng, self.modulus) | 1  # odd
        if base == 10 and multiplier % 5 == 0:
            multiplier += 2
        self.multiplier = multiplier % self.modulus  # coprime with the modulus: a bijection
        self.offset = _below(rng, self.modulus)
        self.count = 0

    def next(self) -> str:
        """The next id."""
        value = (self.count * self.multiplier + self.offset) % self.modulus
        self.count += 1
        return f"{self.prefix}{value:0{self.digits}{'x' if self.base == 16 else 'd'}}"


def _below(rng: np.random.Generator, n: int) -> int:
    """A random integer in [0, n), n of any size (up to 2**128)."""
    return int.from_bytes(rng.bytes(24), "big") % n


class _Sequence:
    """Increasing numbered ids, as a system that numbers its records in order writes them."""

    def __init__(self, rng: np.random.Generator, template: str, start: int):
        self.rng, self.template, self.value = rng, template, start

    def next(self) -> str:
        """The next id: a few numbers on, the gaps being records of people outside the sample."""
        self.value += int(self.rng.integers(1, 4))
        return self.template.format(self.value)


# --------------------------------------------------------------------------- people


@dataclasses.dataclass(frozen=True)
class _Person:
    """A customer or an anonymous web visitor, with the identifiers each channel system records."""

    customer_id: str | None  # None: an anonymous web visitor, known only by a cookie
    region: str
    tier: str
    acquisition: str
    cookies: tuple[str, ...]
    offsets: tuple[int, ...]  # UTC offset, in minutes, of the device behind each cookie
    handle: str
    platform: str
    phone: str
    call_clock: _Clock
    card: str
    store_id: str
    uses_app: bool


def _make_customers(rng: np.random.Generator, n: int, cookies: _Ids) -> list[_Person]:
    """Draw n customers: segments, devices, social handle, phone, loyalty card and home store."""
    region = rng.choice(len(REGIONS), size=n, p=(0.25, 0.25, 0.25, 0.25))
    tier = rng.choice(len(TIERS), size=n, p=(0.55, 0.30, 0.15))
    acquisition = rng.choice(len(ACQUISITION_CHANNELS), size=n, p=(0.35, 0.25, 0.20, 0.20))
    devices = np.where(rng.random(n) < 0.3, 2, 1)
    utc_device = rng.random((n, 2)) < UTC_DEVICE_SHARE
    name = rng.integers(len(NAMES), size=n)
    platform = rng.choice(len(PLATFORMS.options), size=n, p=PLATFORMS.weights)
    phone_digits = rng.integers(0, 10**8, size=n)
    store = rng.integers(3, size=n)
    uses_app = rng.random(n) < 0.3
    cards = _Ids(rng, "LC", 10, base=10)
    people = []
    for i in range(n):
        r = REGIONS[region[i]]
        zone = REGION_CALL_ZONES[r]
        digits = int(phone_digits[i])
        phone = {"Europe/London": f"+44 20 7946 {digits % 10_000:04d}",
                 "Europe/Berlin": f"+49 30 {digits:08d}",
                 "America/New_York": f"+1 212 555 {digits % 10_000:04d}"}[zone]
        people.append(_Person(
            customer_id=f"C{i + 1:06d}",
            region=r,
            tier=TIERS[tier[i]],
            acquisition=ACQUISITION_CHANNELS[acquisition[i]],
            cookies=tuple(cookies.next() for _ in range(devices[i])),
            offsets=tuple(0 if utc_device[i, d] else REGION_OFFSETS[r] for d in range(devices[i])),
            handle=f"@{NAMES[name[i]]}{i + 1}",
            platform=PLATFORMS.options[platform[i]],
            phone=phone,
            call_clock=CALL_CLOCKS[zone],
            card=cards.next(),
            store_id=f"S{region[i] * 3 + store[i] + 1:02d}",
            uses_app=bool(uses_app[i]),
        ))
    return people


def _make_visitors(rng: np.random.Generator, n: int, cookies: _Ids) -> list[_Person]:
    """Draw n anonymous web visitors: one cookie each, on a device in one of the regions' offsets."""
    offsets = rng.choice([60, 120, -240, 0], size=n)
    return [_Person(None, "", "", "", (cookies.next(),), (int(offsets[i]),), "", "", "", WEB, "", "", False)
            for i in range(n)]


# --------------------------------------------------------------------------- sessions


@dataclasses.dataclass
class _Touch:
    """One valid event as generated, before it is written in its channel's layout."""

    at: int  # UTC instant, milliseconds since the Unix epoch
    who: int  # index into the people list
    source: str  # the source that records it: web, social, call_center, store or email (email and app pushes)
    event: str  # the event name as the channel's system writes it
    detail: dict[str, Any]  # the other fields of the channel's row


def _web_session(rng: np.random.Generator, person: _Person, who: int, at: int,
                 hits: Sequence[tuple[str, str, float | None]]) -> list[_Touch]:
    """A web session: the (event, path, order total) hits, seconds to minutes apart, each referred by the one before."""
    cookie = int(rng.integers(len(person.cookies)))
    referrer = REFERRERS.draw(rng)
    session = []
    for i, (event, path, total) in enumerate(hits):
        if i:
            at += int(rng.integers(15_000, 360_000))
        session.append(_Touch(at, who, "web", event,
                              {"cookie": cookie, "url": SITE + path, "referrer": referrer, "order_total": total}))
        referrer = SITE + path
    return session


def _continue_web(rng: np.random.Generator, session: list[_Touch], event: str, path: str,
                  total: float | None) -> None:
    """Append one more hit to a web session, on the same device, referred by the last hit."""
    last = session[-1]
    at = last.at + int(rng.integers(20_000, 300_000))
    session.append(_Touch(at, last.who, "web", event, {"cookie": last.detail["cookie"], "url": SITE + path,
                                                       "referrer": last.detail["url"], "order_total": total}))


def _browse(rng: np.random.Generator, person: _Person, who: int, at: int) -> list[_Touch]:
    """1-4 page views; a known customer with several pages sometimes logs in after the first."""
    pages = [("page_view", BROWSE_PATHS[int(k)], None)
             for k in rng.integers(len(BROWSE_PATHS), size=PAGES_PER_VISIT.draw(rng))]
    if person.customer_id and len(pages) > 1 and rng.random() < LOGIN_SHARE:
        pages.insert(1, ("account_login", "/account/login", None))
    return _web_session(rng, person, who, at, pages)


def _product(rng: np.random.Generator) -> tuple[str, float]:
    """A product path and its price."""
    return f"/p/{int(rng.integers(1000, 10_000))}", round(float(rng.uniform(19, 249)), 2)


def _shop(rng: np.random.Generator, person: _Person, who: int, at: int) -> list[_Touch]:
    """1-4 views of a product, sometimes put in the cart."""
    path, _ = _product(rng)
    hits = [("product_view", path, None)] * int(rng.integers(1, 5))
    if rng.random() < 0.3:
        hits.append(("add_to_cart", "/cart", None))
    return _web_session(rng, person, who, at, hits)


def _cart(rng: np.random.Generator, person: _Person, who: int, at: int, path: str) -> list[_Touch]:
    """Views of the product at `path`, add to cart, maybe a login, and checkout start."""
    hits = [("product_view", path, None)] * int(rng.integers(1, 4)) + [("add_to_cart", "/cart", None)]
    if rng.random() < CART_LOGIN_SHARE:
        hits.append(("account_login", "/account/login?next=/checkout", None))
    hits.append(("checkout_start", "/checkout", None))
    return _web_session(rng, person, who, at, hits)


def _social(who: int, at: int, action: str) -> list[_Touch]:
    """One social interaction."""
    return [_Touch(at, who, "social", action, {})]


def _email(rng: np.random.Generator, person: _Person, who: int, at: int, click: bool) -> list[_Touch]:
    """An email or app push opened, and maybe clicked 1-20 minutes later."""
    detail = {"campaign": _campaign(rng, at), "medium": "app" if person.uses_app and rng.random() < 0.6 else "email"}
    touches = [_Touch(at, who, "email", "open", detail)]
    if click:
        touches.append(_Touch(at + 1000 * int(rng.integers(60, 1200)), who, "email", "click", detail))
    return touches


def _campaign(rng: np.random.Generator, at: int) -> str:
    """A campaign running in the month of `at`."""
    running = CAMPAIGNS[_from_ms(at).month]
    return running[int(rng.integers(len(running)))]


def _call(rng: np.random.Generator, who: int, at: int, reason: str) -> list[_Touch]:
    """One call: an agent, an outcome and an end; abandoned calls are short."""
    outcome = CALL_OUTCOMES.draw(rng)
    seconds = int(rng.integers(20, 90)) if outcome == "abandoned" else int(rng.integers(120, 1500))
    return [_Touch(at, who, "call_center", reason, {"end": at + 1000 * seconds, "outcome": outcome,
                                                   "agent": f"AG{int(rng.integers(1, AGENTS + 1)):03d}"})]


def _receipt(person: _Person, who: int, at: int, kind: str, amount: float) -> list[_Touch]:
    """One store receipt, SALE or RETURN, at the customer's home store."""
    return [_Touch(at, who, "store", kind, {"amount": amount if kind == "SALE" else -amount,
                                            "store": person.store_id})]


# --------------------------------------------------------------------------- journeys


class _Journey:
    """The sessions of one journey being built, in time order."""

    def __init__(self, rng: np.random.Generator, first_day: date, until: datetime):
        self.rng, self.first_day, self.until = rng, first_day, _to_ms(until)
        self.sessions: list[list[_Touch]] = []
        self.stopped = False

    @property
    def end(self) -> int:
        """When the last event so far happened."""
        return self.sessions[-1][-1].at

    def add(self, clock: _Clock, days: int, make: Callable[[int], list[_Touch]]) -> list[_Touch] | None:
        """Start a session `days` calendar days after the last one (0: later the same day) at a time `clock`
        allows, or on the first day if it is the first; `make` fills it. Returns None, and adds nothing more
        to this journey, once a session would start after `until`."""
        if self.sessions:
            return self.add_at(_next_start(self.rng, self.end, days, clock), make)
        return self.add_at(clock.on_day(self.rng, self.first_day), make)

    def add_at(self, at: int, make: Callable[[int], list[_Touch]]) -> list[_Touch] | None:
        """Start a session at `at`; see add."""
        if self.stopped or at > self.until:
            self.stopped = True
            return None
        session = make(at)
        self.sessions.append(session)
        return session


def _next_start(rng: np.random.Generator, after: int, days: int, clock: _Clock) -> int:
    """The start of a session `days` local calendar days after `after` (0: 40 minutes to 5 hours later),
    in the clock's opening hours and at least 40 minutes after `after`."""
    earliest = after + MIN_SESSION_GAP_MS
    if days == 0:
        at = _ceil(earliest + int(rng.integers(SAME_DAY_SPREAD_MS)), clock.step_ms)
        if clock.is_open(at):
            return at
        days = 1
    day = clock.local(after).date() + timedelta(days=days)
    while (at := clock.on_day(rng, day)) < earliest:
        day += timedelta(days=1)
    return at


def _build_journey(rng: np.random.Generator, person: _Person, who: int, first_day: date,
                   until: datetime) -> _Journey:
    """One journey from `first_day`: awareness sessions, then (unless it stops there) consideration sessions,
    then (if it converts) a purchase and maybe retention, loyalty and advocacy. A converting journey's last
    consideration session is a checkout; the purchase follows within minutes, or the same day in a store,
    except in the slow region, where payment clears 4-8 days later. Sessions after `until` are not made
    (the journey is then `stopped`)."""
    last_stage = JOURNEY_OUTCOMES[person.acquisition].draw(rng)
    journey = _Journey(rng, first_day, until)
    awareness = AWARENESS_SESSION_COUNT.draw(rng)
    for i in range(awareness):
        kind = AWARENESS_SESSIONS[person.acquisition].draw(rng)
        days = DAYS_BETWEEN_SESSIONS.draw(rng)
        if kind == "browse":
            journey.add(WEB, days, lambda at: _browse(rng, person, who, at))
        elif kind == "social":
            action = "ad_click" if rng.random() < 0.6 else "like"
            journey.add(SOCIAL, days, lambda at: _social(who, at, action))
        else:
            click = i == awareness - 1 and last_stage != "awareness" and rng.random() < EMAIL_CLICK_SHARE
            journey.add(EMAIL, days, lambda at: _email(rng, person, who, at, click))
    if last_stage == "awareness":
        return journey

    total = 0.0
    consideration = CONSIDERATION_SESSION_COUNT.draw(rng)
    for i in range(consideration):
        days = DAYS_BETWEEN_SESSIONS.draw(rng)
        checkout = i == consideration - 1 and (last_stage == "purchase" or rng.random() < ABANDONED_CART_SHARE)
        kind = "cart" if checkout else CONSIDERATION_SESSIONS[person.acquisition].draw(rng)
        if kind == "cart":
            path, price = _product(rng)
            total = round(price * int(rng.integers(1, 3)), 2)
            journey.add(WEB, days, lambda at: _cart(rng, person, who, at, path))
        elif kind == "shop":
            journey.add(WEB, days, lambda at: _shop(rng, person, who, at))
        elif kind == "talk":
            action = "comment" if rng.random() < 0.5 else "dm"
            journey.add(SOCIAL, days, lambda at: _social(who, at, action))
        else:
            journey.add(person.call_clock, days, lambda at: _call(rng, who, at, "PRESALE_QUESTION"))
    if last_stage != "purchase" or journey.stopped:
        return journey

    purchased_in_store = _purchase(rng, journey, person, who, total)
    _after_purchase(rng, journey, person, who, total, purchased_in_store)
    return journey


def _purchase(rng: np.random.Generator, journey: _Journey, person: _Person, who: int, total: float) -> bool:
    """Add the purchase after the checkout session; return whether it was paid in a store. In the slow region
    payment clears 4-8 days later, online or at collection in a store; elsewhere the checkout completes within
    minutes, or the order is paid at collection the same day."""
    if person.region == SLOW_REGION:
        days = int(rng.integers(SLOW_PAYMENT_DAYS[0], SLOW_PAYMENT_DAYS[1] + 1))
        if rng.random() < SLOW_STORE_PURCHASE_SHARE:
            return journey.add(STORE, days, lambda at: _receipt(person, who, at, "SALE", total)) is not None
        confirmation = [("purchase", "/checkout/confirmation?payment=transfer", total)]
        journey.add(WEB, days, lambda at: _web_session(rng, person, who, at, confirmation))
        return False
    if rng.random() < STORE_PURCHASE_SHARE:
        at = _ceil(journey.end + int(rng.integers(45 * MINUTE_MS, 4 * HOUR_MS)), MINUTE_MS)
        if STORE.is_open(at):
            return journey.add_at(at, lambda at: _receipt(person, who, at, "SALE", total)) is not None
    _continue_web(rng, journey.sessions[-1], "purchase", "/checkout/confirmation", total)
    return False


def _after_purchase(rng: np.random.Generator, journey: _Journey, person: _Person, who: int, total: float,
                    in_store: bool) -> None:
    """Maybe retention (a service call, or a return in the store it was bought in), loyalty (enrolment call or
    points redeemed online) and advocacy (a share or a review), in that order, hours to days apart."""
    for stage, share in AFTER_PURCHASE:
        if rng.random() >= share:
            continue
        days = DAYS_AFTER_PURCHASE.draw(rng)
        if stage == "retention" and in_store and rng.random() < 0.4:
            journey.add(STORE, days, lambda at: _receipt(person, who, at, "RETURN", total))
        elif stage == "retention":
            reason = SERVICE_REASONS.draw(rng)
            journey.add(person.call_clock, days, lambda at: _call(rng, who, at, reason))
        elif stage == "loyalty" and rng.random() < 0.5:
            journey.add(person.call_clock, days, lambda at: _call(rng, who, at, "LOYALTY_ENROLL"))
        elif stage == "loyalty":
            redeem = [("loyalty_redeem", "/account/loyalty/redeem", None)]
            journey.add(WEB, days, lambda at: _web_session(rng, person, who, at, redeem))
        else:
            action = "share" if rng.random() < 0.6 else "review"
            journey.add(SOCIAL, days, lambda at: _social(who, at, action))


def _customer_journeys(rng: np.random.Generator, person: _Person, who: int) -> list[list[list[_Touch]]]:
    """A customer's 1-3 journeys: closed ones from June on, each starting 35-60 days after the one before ended,
    all ended before CLOSED_BY; for OPEN_SHARE of customers the last one starts in October and is cut at the
    end of the data, so it may still be open."""
    wanted = _Mix(JOURNEYS_PER_CUSTOMER, JOURNEYS_PER_CUSTOMER_WEIGHTS).draw(rng)
    cutoff = CLOSED_BY
    open_day = None
    if rng.random() < OPEN_SHARE:
        open_day = OPEN_FROM + timedelta(days=int(rng.integers(OPEN_SPREAD_DAYS + 1)))
        cutoff = min(cutoff, datetime(open_day.year, open_day.month, open_day.day, tzinfo=UTC)
                     - timedelta(days=JOURNEY_GAP_DAYS[0]))
        wanted -= 1
    journeys: list[list[list[_Touch]]] = []
    day = PERIOD_START.date() + timedelta(days=int(rng.integers(FIRST_START_SPREAD_DAYS + 1)))
    while len(journeys) < wanted:
        journey = _build_journey(rng, person, who, day, until=cutoff)
        if journey.stopped and (journeys or open_day):
            break
        if journey.stopped:  # a customer's only journey must fit: start it again early in June
            day = PERIOD_START.date() + timedelta(days=int(rng.integers(14)))
            continue
        journeys.append(journey.sessions)
        gap = int(rng.integers(JOURNEY_GAP_DAYS[0], JOURNEY_GAP_DAYS[1] + 1))
        day = _from_ms(journey.end).date() + timedelta(days=gap)
    if open_day:
        journeys.append(_build_journey(rng, person, who, open_day, until=LAST_SESSION_AT).sessions)
    return journeys


def _visitor_journey(rng: np.random.Generator, person: _Person, who: int) -> list[list[_Touch]]:
    """An anonymous visitor's 1-3 browsing sessions, days apart, starting any day of the period."""
    first_day = PERIOD_START.date() + timedelta(days=int(rng.integers((PERIOD_END - PERIOD_START).days)))
    journey = _Journey(rng, first_day, LAST_SESSION_AT)
    for _ in range(_Mix((1, 2, 3), (0.6, 0.3, 0.1)).draw(rng)):
        journey.add(WEB, DAYS_BETWEEN_SESSIONS.draw(rng), lambda at: _browse(rng, person, who, at))
    return journey.sessions


# --------------------------------------------------------------------------- raw files


@dataclasses.dataclass(eq=False)
class _Row:
    """One data line of a raw file: values by column, or (malformed) a list of fields or a raw text line."""

    values: dict[str, Any] | list[Any] | str
    who: int | None = None  # the person of a valid row
    reason: str | None = None  # the planted quarantine reason of a bad row
    copy_of: _Row | None = None  # the earlier row an exact duplicate repeats


@dataclasses.dataclass
class _RawFile:
    """A raw file as its channel's system writes it."""

    path: str  # relative to the output directory
    columns: tuple[str, ...] | None  # CSV header; None for JSON lines
    delimiter: str = ","
    month: int | None = None  # the month a monthly file holds
    rows: list[_Row] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        """The file's content: a header line for CSV, then one line per row."""
        if self.columns is None:
            return "".join((r.values if isinstance(r.values, str) else _jsonl(r.values)) + "\n" for r in self.rows)
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        writer.writerow(self.columns)
        for r in self.rows:
            writer.writerow([r.values[c] for c in self.columns] if isinstance(r.values, dict) else r.values)
        return buffer.getvalue()

    def lines(self) -> dict[int, int]:
        """The physical line number of each row, by id() of the row (a CSV header is line 1)."""
        first = 1 if self.columns is None else 2
        return {id(r): first + i for i, r in enumerate(self.rows)}


def _jsonl(values: dict[str, Any]) -> str:
    """A JSON object on one line, keys in the given order."""
    return json.dumps(values, separators=(",", ":"))


@dataclasses.dataclass
class _Source:
    """One configured source: its files, how a touch becomes a row, and where the row goes."""

    name: str
    files: dict[str, _RawFile]
    file_of: Callable[[_Touch, _Person], str]
    make_row: Callable[[_Touch, _Person, str], dict[str, Any]]
    next_id: Callable[[_Touch], str]
    id_columns: tuple[str, ...]

    def row(self, touch: _Touch, person: _Person) -> dict[str, Any]:
        """The row of `touch`, with a new id."""
        return self.make_row(touch, person, self.next_id(touch))


def _web_row(t: _Touch, p: _Person, hit_id: str) -> dict[str, Any]:
    """A clickstream hit; order_total only on purchases; ts in the device's offset, milliseconds."""
    cookie = t.detail["cookie"]
    row = {"hit_id": hit_id, "cookie_id": p.cookies[cookie], "user_id": p.customer_id, "event": t.event,
           "url": t.detail["url"], "referrer": t.detail["referrer"]}
    if t.event == "purchase":
        row["order_total"] = t.detail["order_total"]
    offset = timezone(timedelta(minutes=p.offsets[cookie]))
    row["ts"] = _from_ms(t.at).astimezone(offset).isoformat(timespec="milliseconds")
    return row


def _social_row(t: _Touch, p: _Person, interaction_id: str) -> dict[str, Any]:
    """A social interaction; created_time in Unix seconds."""
    return {"interaction_id": interaction_id, "platform": p.platform, "handle": p.handle,
            "customer_ref": p.customer_id, "action": t.event, "created_time": str(t.at // 1000)}


def _call_row(t: _Touch, p: _Person, call_id: str) -> dict[str, Any]:
    """A call; start and end in local wall time of the call center's zone, named in tz."""
    clock = p.call_clock
    return {"call_id": call_id, "customer_number": p.customer_id, "phone": p.phone,
            "call_start": clock.local(t.at).strftime("%Y-%m-%d %H:%M:%S"),
            "call_end": clock.local(t.detail["end"]).strftime("%Y-%m-%d %H:%M:%S"), "tz": clock.zone,
            "reason_code": t.event, "agent_id": t.detail["agent"], "outcome": t.detail["outcome"]}


def _store_row(t: _Touch, p: _Person, receipt_no: str) -> dict[str, Any]:
    """A till receipt; purchased_at in Paris wall time, day first, to the minute; returns are negative."""
    return {"store_id": t.detail["store"], "receipt_no": receipt_no, "receipt_type": t.event,
            "amount": f"{t.detail['amount']:.2f}", "currency": "EUR", "loyalty_card": p.card,
            "customer_no": p.customer_id, "purchased_at": STORE.local(t.at).strftime("%d/%m/%Y %H:%M")}


def _email_row(t: _Touch, p: _Person, message_event_id: str) -> dict[str, Any]:
    """An email or app-push open or click; event_time ISO UTC to the second."""
    return {"message_event_id": message_event_id, "recipient_id": p.customer_id,
            "campaign": t.detail["campaign"], "event": t.event, "medium": t.detail["medium"],
            "event_time": _from_ms(t.at).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _make_sources(rng: np.random.Generator) -> list[_Source]:
    """The five sources of journeys.toml, with empty files and their id sequences."""
    web_ids, social_ids, email_ids = _Ids(rng, "w-", 12), _Ids(rng, "sm-", 12), _Ids(rng, "me-", 12)
    call_ids = _Sequence(rng, "CL{:08d}", int(rng.integers(10_000_000, 20_000_000)))
    receipts = {f"S{k:02d}": _Sequence(rng, "{:07d}", int(rng.integers(100_000, 900_000))) for k in range(1, 13)}
    return [
        _Source("web",
                {f"web/clickstream-2026-{m:02d}.jsonl": _RawFile(f"web/clickstream-2026-{m:02d}.jsonl", None, month=m)
                 for m in MONTHS},
                lambda t, p: f"web/clickstream-2026-{_from_ms(t.at).month:02d}.jsonl",
                _web_row, lambda t: web_ids.next(), ("hit_id",)),
        _Source("social", {"social/social_export.csv": _RawFile("social/social_export.csv", SOCIAL_COLUMNS)},
                lambda t, p: "social/social_export.csv", _social_row, lambda t: social_ids.next(),
                ("interaction_id",)),
        _Source("call_center",
                {f"call_center/calls_2026{m:02d}.csv": _RawFile(f"call_center/calls_2026{m:02d}.csv", CALL_COLUMNS,
                                                                delimiter=";", month=m) for m in MONTHS},
                lambda t, p: f"call_center/calls_2026{p.call_clock.local(t.at).month:02d}.csv",
                _call_row, lambda t: call_ids.next(), ("call_id",)),
        _Source("store", {"store/pos_receipts.csv": _RawFile("store/pos_receipts.csv", STORE_COLUMNS)},
                lambda t, p: "store/pos_receipts.csv", _store_row, lambda t: receipts[t.detail["store"]].next(),
                ("store_id", "receipt_no")),
        _Source("email", {"email/email_events.csv": _RawFile("email/email_events.csv", EMAIL_COLUMNS)},
                lambda t, p: "email/email_events.csv", _email_row, lambda t: email_ids.next(),
                ("message_event_id",)),
    ]


def _fill(sources: list[_Source], people: list[_Person], touches: list[_Touch]) -> None:
    """Write every touch as a row of its source's file, each file in time order."""
    by_name = {s.name: s for s in sources}
    for t in sorted(touches, key=lambda t: (t.at, t.who)):
        source, person = by_name[t.source], people[t.who]
        source.files[source.file_of(t, person)].rows.append(_Row(source.row(t, person), who=t.who))


# --------------------------------------------------------------------------- bad rows and duplicates


def _set(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An edit that sets the given columns of a row."""
    return lambda values: {**values, **changes}


def _drop_fields(n: int) -> Callable[[dict[str, Any]], list[Any]]:
    """An edit that writes a CSV row without its last n fields."""
    return lambda values: list(values.values())[:-n]


def _extra_field(text: str) -> Callable[[dict[str, Any]], list[Any]]:
    """An edit that writes a CSV row with one field too many."""
    return lambda values: [*values.values(), text]


# (source, reason, edit of a fresh valid row): a handful of every quarantine reason.
BAD_ROWS: tuple[tuple[str, str, Callable[[dict[str, Any]], Any]], ...] = (
    ("web", "malformed_line", lambda values: _jsonl(values)[: len(_jsonl(values)) // 2]),  # cut off
    ("web", "malformed_line", lambda values: _jsonl(values) * 2),  # two hits on one line
    ("web", "missing_customer", _set(user_id=None, cookie_id=None)),
    ("web", "missing_customer", _set(user_id=None, cookie_id=None)),
    ("web", "unparseable_timestamp", _set(ts="2026-13-45T99:00")),
    ("web", "timestamp_out_of_range", _set(ts="1970-01-01T00:00:00.000+00:00")),
    ("web", "timestamp_out_of_range", _set(ts="2099-06-01T12:00:00.000+02:00")),
    ("web", "missing_event_type", _set(event="")),
    ("social", "malformed_line", _drop_fields(1)),
    ("social", "missing_customer", _set(customer_ref="")),
    ("social", "unparseable_timestamp", _set(created_time="2026-06-03 10:00")),
    ("social", "timestamp_out_of_range", _set(created_time="0")),
    ("social", "missing_event_type", _set(action="")),
    ("call_center", "malformed_line", _extra_field("see ticket 4411")),
    ("call_center", "missing_customer", _set(customer_number="", phone="")),
    ("call_center", "unparseable_timestamp", _set(call_start="yesterday")),
    ("call_center", "timestamp_out_of_range", _set(call_start="2099-01-01 10:00:00", call_end="2099-01-01 10:06:00")),
    ("call_center", "missing_event_type", _set(reason_code="")),
    ("call_center", "unknown_timezone", _set(tz="Mars/Olympus_Mons")),
    ("call_center", "unknown_timezone", _set(tz="Mars/Olympus_Mons")),
    ("call_center", "unknown_timezone", _set(tz="Europe/Atlantis")),
    ("store", "malformed_line", _drop_fields(2)),
    ("store", "missing_customer", _set(loyalty_card="", customer_no="")),
    ("store", "unparseable_timestamp", _set(purchased_at="31/02/2026 25:61")),
    ("store", "timestamp_out_of_range", _set(purchased_at="01/01/1970 10:00")),
    ("store", "missing_event_type", _set(receipt_type="")),
    ("email", "unparseable_timestamp", _set(event_time="2026-06-31T10:00:00Z")),
    ("email", "missing_event_type", _set(event="")),
    ("email", "unknown_channel", _set(medium="sms")),
    ("email", "unknown_channel", _set(medium="sms")),
    ("email", "unknown_channel", _set(medium="fax")),
)
# Sources with a row that reuses an earlier row's event id, with other content (duplicate_event_id).
REUSED_IDS = ("web", "social", "call_center", "store", "email")
# (source, in the next file?): rows repeated byte for byte later, resent or exported twice.
EXACT_DUPLICATES = (("web", False), ("web", False), ("web", True), ("store", False), ("store", False),
                    ("call_center", True), ("email", False))


def _fresh_touch(rng: np.random.Generator, source: str, person: _Person, who: int, month: int) -> _Touch:
    """A plausible event of `source` for `person` in `month`: the raw material of a bad row."""
    day = date(2026, month, int(rng.integers(1, 29)))
    if source == "web":
        return _browse(rng, person, who, WEB.on_day(rng, day))[0]
    if source == "social":
        return _social(who, SOCIAL.on_day(rng, day), "like")[0]
    if source == "call_center":
        return _call(rng, who, person.call_clock.on_day(rng, day), SERVICE_REASONS.draw(rng))[0]
    if source == "store":
        return _receipt(person, who, STORE.on_day(rng, day), "SALE", _product(rng)[1])[0]
    return _email(rng, person, who, EMAIL.on_day(rng, day), click=False)[0]


def _plant_defects(rng: np.random.Generator, sources: list[_Source], people: list[_Person],
                   eligible: list[int]) -> None:
    """Insert the bad rows of BAD_ROWS and REUSED_IDS and the copies of EXACT_DUPLICATES into the files.
    Bad rows are fresh rows of `eligible` people, broken in one way each; reused ids and copies are placed
    after a valid row of an eligible person, in the same file or (copies) early in the next one."""
    by_name = {s.name: s for s in sources}
    allowed = set(eligible)
    used: set[int] = set()

    def original(files: list[_RawFile]) -> tuple[_RawFile, int]:
        """A random valid row of an eligible person, not used as an original before: its file and index."""
        sizes = np.array([len(f.rows) for f in files], dtype=float)
        while True:
            file = files[int(rng.choice(len(files), p=sizes / sizes.sum()))]
            index = int(rng.integers(len(file.rows)))
            row = file.rows[index]
            if row.who in allowed and row.reason is None and row.copy_of is None and id(row) not in used:
                used.add(id(row))
                return file, index

    def fresh(source: _Source, file: _RawFile) -> dict[str, Any]:
        """A new valid row of an eligible person in `file`'s month (or any month of a one-file source)."""
        who = eligible[int(rng.integers(len(eligible)))]
        month = file.month or MONTHS[int(rng.integers(len(MONTHS)))]
        return source.row(_fresh_touch(rng, source.name, people[who], who, month), people[who])

    for name in REUSED_IDS:
        source = by_name[name]
        file, index = original(list(source.files.values()))
        values = fresh(source, file) | {c: file.rows[index].values[c] for c in source.id_columns}
        file.rows.insert(int(rng.integers(index + 1, len(file.rows) + 1)), _Row(values, reason="duplicate_event_id"))
    for name, next_file in EXACT_DUPLICATES:
        source = by_name[name]
        files = list(source.files.values())
        file, index = original(files[:-1] if next_file else files)
        copy = _Row(file.rows[index].values, copy_of=file.rows[index])
        if next_file:
            target = files[files.index(file) + 1]
            target.rows.insert(int(rng.integers(len(target.rows) // 10 + 1)), copy)
        else:
            file.rows.insert(min(index + 1 + int(rng.integers(40)), len(file.rows)), copy)
    for name, reason, edit in BAD_ROWS:
        source = by_name[name]
        files = [f for f in source.files.values() if f.rows]
        file = files[int(rng.integers(len(files)))]
        file.rows.insert(int(rng.integers(len(file.rows) + 1)), _Row(edit(fresh(source, file)), reason=reason))


# --------------------------------------------------------------------------- identities


def _plant_identities(rng: np.random.Generator, sources: list[_Source], people: list[_Person],
                      customers: int, shared_cookie: str) -> dict[str, Any]:
    """Make some rows carry fewer identifiers, as channel systems do, and return who is who.

    Web hits on a cookie before the customer first logs in on it lose their user_id; the call center keeps
    only the phone of some customers, the till only the loyalty card of others (both on file in the CRM
    export); two customers are logged in on one shared cookie. Customers of the shared device keep all their
    ids, and only customers whose phone is their own lose their customer number on calls."""
    by_name = {s.name: s for s in sources}
    rows_of: dict[tuple[str, int], list[_Row]] = {}
    for name in ("web", "call_center", "store"):
        for file in by_name[name].files.values():  # files and rows in time order
            for row in file.rows:
                rows_of.setdefault((name, row.who), []).append(row)
    phone_owners: dict[str, list[str]] = {}
    for p in people[:customers]:
        phone_owners.setdefault(p.phone, []).append(p.customer_id)
    with_web = [who for who in range(customers) if len(rows_of.get(("web", who), [])) >= 2]
    sharing = sorted(int(w) for w in rng.choice(with_web, size=2, replace=False))
    for who in sharing:  # the first half of their hits happen on the shared device, logged in
        hits = rows_of[("web", who)]
        for row in hits[: len(hits) // 2]:
            row.values["cookie_id"] = shared_cookie
    anonymous_until_login, phone_only, card_only = [], [], []
    for who in range(customers):
        person = people[who]
        if who not in sharing:
            for cookie in person.cookies:
                hits = [r for r in rows_of.get(("web", who), []) if r.values["cookie_id"] == cookie]
                first_login = next((i for i, r in enumerate(hits) if r.values["event"] == "account_login"), 0)
                if first_login and rng.random() < ANONYMOUS_UNTIL_LOGIN_SHARE:
                    for row in hits[:first_login]:
                        row.values["user_id"] = None
                    anonymous_until_login.append({"customer_id": person.customer_id, "cookie": cookie,
                                                  "anonymous_hits": first_login})
        calls = rows_of.get(("call_center", who), [])
        if calls and len(phone_owners[person.phone]) == 1 and rng.random() < PHONE_ONLY_SHARE:
            for row in calls:
                row.values["customer_number"] = ""
            phone_only.append({"customer_id": person.customer_id, "phone": person.phone, "calls": len(calls)})
        receipts = rows_of.get(("store", who), [])
        if receipts and rng.random() < CARD_ONLY_SHARE:
            for row in receipts:
                row.values["customer_no"] = ""
            card_only.append({"customer_id": person.customer_id, "card": person.card, "receipts": len(receipts)})
    shared = [{"type": "cookie", "value": shared_cookie, "customer_ids": [people[w].customer_id for w in sharing],
               "planted": True}]
    shared += [{"type": "phone", "value": phone, "customer_ids": sorted(owners), "planted": False}
               for phone, owners in sorted(phone_owners.items()) if len(owners) > 1]
    shared_values = {(s["type"], s["value"]) for s in shared}

    def own(kind: str, value: str) -> list[str]:
        return [] if (kind, value) in shared_values else [value]

    return {
        "customer_type": "customer",
        "people": [
            {"customer_id": p.customer_id,
             "identifiers": {"cookie": list(p.cookies), "handle": [p.handle], "phone": own("phone", p.phone),
                             "card": [p.card], "email": [_email_address(p)]}}
            for p in people[:customers]
        ],
        "visitors": [p.cookies[0] for p in people[customers:]],
        "anonymous_until_login": anonymous_until_login,
        "two_cookies": [p.customer_id for p in people[:customers] if len(p.cookies) == 2],
        "phone_only_calls": phone_only,
        "card_only_receipts": card_only,
        "shared": shared,
    }


def _email_address(person: _Person) -> str:
    """The e-mail address the CRM holds for a customer."""
    return f"{person.handle[1:]}@mail.example.com"


def _crm_csv(customers: list[_Person]) -> str:
    """crm/crm_export.csv: each customer's id with the e-mail, phone and loyalty card on file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CRM_COLUMNS)
    for p in customers:
        writer.writerow((p.customer_id, _email_address(p), p.phone, p.card))
    return buffer.getvalue()


# --------------------------------------------------------------------------- ground truth and output


def _ground_truth(seed: int, customers: list[_Person], visitors: int, sources: list[_Source],
                  journeys: list[list[list[_Touch]]], identity: dict[str, Any]) -> dict[str, Any]:
    """The planted truths, every bad row and duplicate by file and line, row counts, and journey statuses
    as the pipeline should find them (as of the latest event)."""
    bad_rows, duplicates, files = [], [], {}
    valid: dict[str, int] = {}
    for source in sources:
        where = {row: (path, line) for path, f in source.files.items() for row, line in f.lines().items()}
        for path, file in source.files.items():
            files[path] = {"source": source.name, "rows": len(file.rows)}
            for r in file.rows:
                if r.reason:
                    bad_rows.append({"source": source.name, "file": path, "row": where[id(r)][1], "reason": r.reason})
                elif r.copy_of:
                    of_path, of_line = where[id(r.copy_of)]
                    duplicates.append({"source": source.name, "file": path, "row": where[id(r)][1],
                                       "duplicate_of": {"file": of_path, "row": of_line}})
                else:
                    valid[source.name] = valid.get(source.name, 0) + 1
    as_of = max(s[-1].at for j in journeys for s in j)
    statuses = {"converted": 0, "dropped": 0, "open": 0}
    for journey in journeys:
        if any(t.event in ("purchase", "SALE") for s in journey for t in s):
            statuses["converted"] += 1
        elif journey[-1][-1].at < as_of - JOURNEY_TIMEOUT_MS:
            statuses["dropped"] += 1
        else:
            statuses["open"] += 1
    return {
        "seed": seed,
        "customers": len(customers),
        "period": {"start": PERIOD_START.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": PERIOD_END.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "bottleneck": {"level": "stage", "segment_key": "region", "segment_value": SLOW_REGION,
                       "from_node": "consideration", "to_node": "purchase", "wait_days": list(SLOW_PAYMENT_DAYS)},
        "drop_off": {"level": "stage", "segment_key": "acquisition_channel", "segment_value": LEAKY_CHANNEL,
                     "node": "consideration"},
        "bad_rows": sorted(bad_rows, key=lambda b: (b["file"], b["row"])),
        "duplicates": sorted(duplicates, key=lambda d: (d["file"], d["row"])),
        "files": files,
        "events": {"valid": sum(valid.values()), "by_source": valid},
        "as_of": _from_ms(as_of).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "journeys": {"total": len(journeys), **statuses},
        "anonymous_visitors": visitors,
        "customers_file": {"path": "customers.csv", "rows": len(customers)},
        "identity": identity,
    }


def _customers_csv(rng: np.random.Generator, customers: list[_Person], first_at: list[int]) -> str:
    """customers.csv: segments and a signup date on or up to ~2.5 years before the first event."""
    first_day = np.array([_from_ms(at).date() for at in first_at], dtype="datetime64[D]")
    before = np.where(rng.random(len(customers)) < 0.15, 0, rng.integers(1, 900, size=len(customers)))
    signup = np.datetime_as_string(first_day - before.astype("timedelta64[D]"))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CUSTOMER_COLUMNS)
    for p, day in zip(customers, signup):
        writer.writerow((p.customer_id, p.region, p.tier, p.acquisition, day))
    return buffer.getvalue()


def write_sample(out_dir: Path, customers: int = 2000, seed: int = 7) -> dict:
    """Write synthetic raw data of `customers` customers (plus anonymous web visitors) into `out_dir`, with
    customers.csv and ground_truth.json, and return the ground truth. The same arguments write byte-identical
    files. Raises ValueError for fewer than MIN_CUSTOMERS customers."""
    if customers < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS} to plant every truth, got {customers}")
    people_rng, journey_rng, id_rng, defect_rng, identity_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
    cookies = _Ids(people_rng, "ck-", 16)
    known = _make_customers(people_rng, customers, cookies)
    people = known + _make_visitors(people_rng, round(customers * ANONYMOUS_PER_CUSTOMER), cookies)
    per_customer = [_customer_journeys(journey_rng, people[who], who) for who in range(customers)]
    journeys = [j for js in per_customer for j in js]
    journeys += [_visitor_journey(journey_rng, people[who], who) for who in range(customers, len(people))]

    sources = _make_sources(id_rng)
    _fill(sources, people, [t for j in journeys for s in j for t in s])
    identity = _plant_identities(identity_rng, sources, people, customers, shared_cookie=cookies.next())
    eligible = [who for who, p in enumerate(known) if p.region != SLOW_REGION and p.acquisition != LEAKY_CHANNEL]
    _plant_defects(defect_rng, sources, people, eligible)

    out_dir = Path(out_dir)
    for source in sources:
        for path, file in source.files.items():
            (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / path).write_text(file.text(), encoding="utf-8", newline="")
    first_at = [js[0][0][0].at for js in per_customer]
    (out_dir / "customers.csv").write_text(_customers_csv(people_rng, known, first_at), encoding="utf-8", newline="")
    (out_dir / "crm").mkdir(parents=True, exist_ok=True)
    (out_dir / "crm" / "crm_export.csv").write_text(_crm_csv(known), encoding="utf-8", newline="")
    truth = _ground_truth(seed, known, len(people) - customers, sources, journeys, identity)
    (out_dir / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8", newline="")
    return truth
