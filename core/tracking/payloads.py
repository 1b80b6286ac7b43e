"""Collector payloads -> rows: strict validation at the boundary, one error naming the field.

A request body is one JSON object (one touch or one conversion) or ``{"batch": [...]}``. Every item is
checked before anything is stored; the first bad field fails the whole request with an
`InputError` whose ``field`` is its path (``batch[3].timestamp``). Field names follow the canonical
model: ``event_id``, ``user_id``, ``timestamp`` (ISO 8601 with a zone, or epoch milliseconds),
``channel`` or ``source`` / ``medium`` / ``campaign``, ``campaign_id``, click ids; conversions add
``type``, ``value``, ``currency``, ``order_id`` and the identity, device, consent and source fields.
Unknown fields are refused (a typo would otherwise be dropped silently).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import sys
import uuid
from decimal import Decimal

from core.money import is_iso_currency, to_decimal
from core.visible import visible

from .identity import IDENTITY_FIELDS, country_code, email_parts, hashed_identity, is_hashed, sha256

#: The largest request body the collector reads (bytes) and the most items in one batch.
MAX_BODY_BYTES = 512 * 1024
MAX_BATCH = 500
#: The longest event id and user key (the ``event_id`` and ``user_key`` columns' length).
EVENT_ID_LIMIT = USER_KEY_LIMIT = 200
#: How far ahead of the collector's clock a timestamp may be (client clocks drift a little).
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_MS_FLOOR = int(_EARLIEST.timestamp() * 1000)
_EPOCH_MS_CEILING = int(dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc).timestamp() * 1000)
INTERACTIONS = ("impression", "click", "visit")
#: Meta's action_source values (facebook_business.adobjects.serverside.action_source.ActionSource).
ACTION_SOURCES = ("website", "app", "email", "phone_call", "chat", "physical_store", "system_generated",
                  "business_messaging", "other")
_TYPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .:-]{0,99}$")
_FBC = re.compile(r"^fb\.\d\.\d{10,13}\.\S+$")
_FBP = re.compile(r"^fb\.\d\.\d{10,13}\.\d+$")
_CONTROL = re.compile(r"[\x00-\x1f]")


_FIELD_SHOWN = 120


class InputError(ValueError):
    """Bad input: HTTP ``status`` and the ``field`` at fault (a JSON path); nothing was stored."""

    def __init__(self, field: str, message: str, status: int = 422):
        if len(field) > _FIELD_SHOWN:  # an unknown field's name comes from the body: never echo 500 KB of it
            field = field[:_FIELD_SHOWN] + "…"
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status

    def to_dict(self) -> dict:
        return {"error": self.message, "field": self.field}


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


#: One decoder for every request (``json.loads`` with options builds a new one per call).
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)


def parse_json(body: bytes) -> object:
    """The request body as JSON (decimals kept exact); `InputError` naming ``body`` otherwise."""
    if len(body) > MAX_BODY_BYTES:
        raise InputError("body", f"the body is larger than {MAX_BODY_BYTES:,} bytes", 413)
    if not body.strip():
        raise InputError("body", "the body is empty: send a JSON object", 400)
    try:  # as json.loads reads bytes: UTF-8, -16 or -32 by the first bytes
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as exc:
        if "integer string conversion" in str(exc):  # Python's guard, whose advice (set_int_max_str_digits) is not the sender's
            raise InputError("body", f"malformed JSON: a number has more than {sys.get_int_max_str_digits():,} digits", 400) from None
        raise InputError("body", f"malformed JSON: {exc}", 400) from None
    except RecursionError:
        raise InputError("body", "the JSON is nested too deeply", 400) from None


def items_of(payload: object) -> list[tuple[str, dict]]:
    """``[(path prefix, item), ...]`` of one object or a ``{"batch": [...]}``."""
    if not isinstance(payload, dict):
        raise InputError("body", "the body must be a JSON object (one item, or {\"batch\": [...]})", 400)
    if "batch" not in payload:
        return [("", payload)]
    extra = sorted(set(payload) - {"batch"})
    if extra:
        raise InputError(extra[0], "a batch body holds only \"batch\"")
    batch = payload["batch"]
    if not isinstance(batch, list):
        raise InputError("batch", "must be a list of objects")
    if not batch:
        raise InputError("batch", "is empty")
    if len(batch) > MAX_BATCH:
        raise InputError("batch", f"holds {len(batch):,} items; at most {MAX_BATCH} per request", 413)
    for i, item in enumerate(batch):
        if not isinstance(item, dict):
            raise InputError(f"batch[{i}]", "must be a JSON object")
    return [(f"batch[{i}].", item) for i, item in enumerate(batch)]


# ------------------------------------------------------------------------------------------ fields
def text_field(name: str, value: object, limit: int) -> str:
    """A required text value from outside a body (a path parameter), checked and cleaned as a body's
    text fields are (so a user key is looked up as the collector stored it); `InputError` naming ``name``."""
    return _Item("", {name: value}, frozenset((name,))).text(name, limit, required=True)


class _Item:
    """Typed access to one item's fields, each error naming ``prefix + name``."""

    def __init__(self, prefix: str, data: dict, allowed: frozenset[str]):
        self.prefix, self.data = prefix, data
        if not allowed.issuperset(data):
            raise InputError(prefix + sorted(set(data) - allowed)[0], "is not a known field")

    def fail(self, name: str, message: str) -> InputError:
        return InputError(self.prefix + name, message)

    def text(self, name: str, limit: int, *, required: bool = False, alias: str | None = None) -> str | None:
        value = self.data.get(name)
        if value is None and not required and not alias:  # most optional fields are absent
            return None
        if value is None and alias:
            value, name = self.data.get(alias), (alias if alias in self.data else name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, not {type(value).__name__ if not isinstance(value, Decimal) else 'number'}")
        value = value.strip()
        if not value:
            if required:
                raise self.fail(name, "is empty")
            return None
        if len(value) > limit:
            raise self.fail(name, f"is longer than {limit} characters")
        if _CONTROL.search(value):
            raise self.fail(name, "holds control characters")
        if not value.isascii():
            try:  # JSON's \ud800 escapes decode to unpaired surrogates, which no database can store
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(name, "holds an unpaired surrogate (not valid Unicode)") from None
            value = visible(value).strip()  # no look-alike channel or campaign names
            if not value:
                if required:
                    raise self.fail(name, "holds only invisible characters")
                return None
        return value

    def flag(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise self.fail(name, "must be true or false")

    def timestamp(self, now: dt.datetime) -> dt.datetime:
        value = self.data.get("timestamp")
        if value is None:
            return now
        if isinstance(value, bool):
            raise self.fail("timestamp", "must be an ISO 8601 time with a zone or epoch milliseconds")
        if isinstance(value, (int, Decimal)):
            # the range first, on the number as sent: int() of 1e1000000 would take minutes of CPU
            if value >= _EPOCH_MS_CEILING:
                raise self.fail("timestamp", "is out of range")
            if value < _EPOCH_MS_FLOOR:
                if value > 946_684_800:
                    raise self.fail("timestamp", f"{value} looks like epoch seconds; send epoch milliseconds")
                raise self.fail("timestamp", "is before 2000-01-01")
            if isinstance(value, Decimal) and value != value.to_integral_value():
                raise self.fail("timestamp", "epoch milliseconds must be a whole number")
            ms = int(value)
            try:
                ts = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(microsecond=(ms % 1000) * 1000)
            except (OverflowError, OSError, ValueError):
                raise self.fail("timestamp", "is out of range") from None
        elif isinstance(value, str):
            try:
                ts = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise self.fail("timestamp", f"{value[:40]!r} is not an ISO 8601 time") from None
            if ts.tzinfo is None:
                raise self.fail("timestamp", "has no time zone (add Z or +hh:mm)")
            try:
                ts = ts.astimezone(dt.timezone.utc)
            except OverflowError:  # 9999-12-31T23:59-14:00 is in year 10000 in UTC
                raise self.fail("timestamp", "is out of range") from None
            if ts < _EARLIEST:
                raise self.fail("timestamp", "is before 2000-01-01")
        else:
            raise self.fail("timestamp", "must be an ISO 8601 time with a zone or epoch milliseconds")
        if ts > now + FUTURE_TOLERANCE:
            raise self.fail("timestamp", f"is {(ts - now).total_seconds() / 60:.0f} minutes in the future")
        return ts

    def click_ids(self, row: dict, ts: dt.datetime) -> None:
        data = self.data
        for name in ("gclid", "gbraid", "wbraid", "fbclid"):
            row[name] = self.text(name, 300) if name in data else None
        fbc = self.text("fbc", 400) if "fbc" in data else None
        fbp = self.text("fbp", 200) if "fbp" in data else None
        if fbc is not None and not _FBC.match(fbc):
            raise self.fail("fbc", "must look like fb.1.<creation time in ms>.<fbclid>")
        if fbp is not None and not _FBP.match(fbp):
            raise self.fail("fbp", "must look like fb.1.<creation time in ms>.<random number>")
        if fbc is None and row["fbclid"]:  # the click's creation time is the landing's time, in ms
            fbc = f"fb.1.{int(ts.timestamp() * 1000)}.{row['fbclid']}"
        row["fbc"], row["fbp"] = fbc, fbp


_COMMON = frozenset({"event_id", "user_id", "user_key", "timestamp", "gclid", "gbraid", "wbraid", "fbclid", "fbc", "fbp"})
TOUCH_FIELDS = _COMMON | {"channel", "source", "medium", "campaign", "campaign_id", "interaction", "page_url", "referrer"}
CONVERSION_FIELDS = _COMMON | frozenset(IDENTITY_FIELDS) | {
    "type", "value", "currency", "order_id", "transaction_id", "client_ip", "user_agent", "action_source",
    "event_source_url", "ad_user_data", "ad_personalization", "ga_client_id"}


#: A touch's optional text fields and their length limits, in the row's column order.
_TOUCH_TEXT = (("channel", 100), ("source", 200), ("medium", 200), ("campaign", 300), ("campaign_id", 200),
               ("page_url", 4096), ("referrer", 4096))


def _ids(item: _Item, now: dt.datetime) -> dict:
    return {
        "event_id": item.text("event_id", EVENT_ID_LIMIT),
        "user_key": item.text("user_id", USER_KEY_LIMIT, required=True, alias="user_key"),
        "ts": item.timestamp(now),
    }


def _order_event_id(order_id: str) -> str:
    """The event id of a conversion sent without one: its order id's, so a re-sent order counts once; an
    order id too long for the column (``event_id`` holds `EVENT_ID_LIMIT` characters) by its SHA-256."""
    event_id = f"order:{order_id}"
    return event_id if len(event_id) <= EVENT_ID_LIMIT else f"order:sha256:{sha256(order_id)}"


def parse_touch(prefix: str, data: dict, now: dt.datetime) -> dict:
    """One touch -> a ``tracked_touches`` row (without workspace and key)."""
    item = _Item(prefix, data, TOUCH_FIELDS)
    row = _ids(item, now)
    row["event_id"] = row["event_id"] or uuid.uuid4().hex
    for name, limit in _TOUCH_TEXT:
        row[name] = item.text(name, limit) if name in data else None  # most are absent: no call for them
    interaction = item.text("interaction", 20)
    if interaction is not None and interaction.lower() not in INTERACTIONS:
        raise item.fail("interaction", f"must be one of {', '.join(INTERACTIONS)}")
    row["interaction"] = (interaction or "visit").lower()
    item.click_ids(row, row["ts"])
    return row


def parse_conversion(prefix: str, data: dict, now: dt.datetime, default_phone_region: str | None = None) -> dict:
    """One conversion -> a ``tracked_conversions`` row (identity fields hashed per platform)."""
    item = _Item(prefix, data, CONVERSION_FIELDS)
    row = _ids(item, now)
    kind = item.text("type", 100) or "purchase"
    if not _TYPE.match(kind):
        raise item.fail("type", "may hold letters, digits, spaces and _ . : - only")
    row["type"] = kind.lower()
    value = data.get("value", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value != value or value in (float("inf"), float("-inf")):
        raise item.fail("value", "must be a number")
    value = to_decimal(value)
    if value < 0:
        raise item.fail("value", "must not be negative")
    if value > Decimal("1e12") or value != value.quantize(Decimal("0.000001")):
        raise item.fail("value", "has more than 6 decimals or is too large")
    row["value"] = value
    currency = item.text("currency", 3) if "currency" in data else None
    if currency is None and value != 0:
        raise item.fail("currency", "is required with a value")
    currency = (currency or "USD").upper()
    if not is_iso_currency(currency):
        raise item.fail("currency", f"{currency!r} is not an ISO 4217 currency code")
    row["currency"] = currency
    row["order_id"] = item.text("order_id", 200, alias="transaction_id")
    row["event_id"] = row["event_id"] or (_order_event_id(row["order_id"]) if row["order_id"] else uuid.uuid4().hex)
    source = (item.text("action_source", 30) or "website").lower()
    if source not in ACTION_SOURCES:
        raise item.fail("action_source", f"must be one of {', '.join(ACTION_SOURCES)}")
    row["action_source"] = source
    row["event_source_url"] = item.text("event_source_url", 4096)
    ip = item.text("client_ip", 64)
    if ip is not None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise item.fail("client_ip", "is not an IPv4 or IPv6 address") from None
        if getattr(address, "scope_id", None):  # fe80::1%eth0: a zone of the sender's own network, not a client's address
            raise item.fail("client_ip", "has a zone id (%...): send the client's address without it")
        ip = str(address)
    row["client_ip"], row["user_agent"] = ip, item.text("user_agent", 1000)
    row["ga_client_id"] = item.text("ga_client_id", 100)
    row["ad_user_data"], row["ad_personalization"] = item.flag("ad_user_data"), item.flag("ad_personalization")
    item.click_ids(row, row["ts"])
    row.pop("fbclid")
    identity = {name: item.text(name, 200) for name in IDENTITY_FIELDS}
    if identity["country"] and not is_hashed(identity["country"]) and country_code(identity["country"]) is None:
        raise item.fail("country", "must be an ISO 3166 two-letter country code")
    if identity["gender"] and not is_hashed(identity["gender"]) and identity["gender"].lower() not in (
            "f", "m", "female", "male", "w", "woman", "man"):
        raise item.fail("gender", "must be f or m")
    if identity["email"] and not is_hashed(identity["email"]) and email_parts(identity["email"]) is None:
        raise item.fail("email", "is not an e-mail address (name@domain.tld)")
    row["user_data"] = hashed_identity(identity, row["user_key"], default_phone_region)
    if identity["phone"] and "ph" not in row["user_data"]["meta"]:
        raise item.fail("phone", "is not a phone number with a known country code (start with + or send country)")
    row["has_email"], row["has_phone"] = bool(identity["email"]), bool(identity["phone"])
    return row


def parse_items(payload: object, kind: str, now: dt.datetime, default_phone_region: str | None = None) -> list[dict]:
    """Every item of a request as rows; repeated event ids inside one request keep the first."""
    rows, seen = [], set()
    for prefix, data in items_of(payload):
        row = parse_touch(prefix, data, now) if kind == "touch" else parse_conversion(prefix, data, now, default_phone_region)
        if row["event_id"] not in seen:
            seen.add(row["event_id"])
            rows.append(row)
    return rows


__all__ = ["InputError", "MAX_BODY_BYTES", "MAX_BATCH", "EVENT_ID_LIMIT", "USER_KEY_LIMIT", "text_field", "FUTURE_TOLERANCE", "ACTION_SOURCES", "parse_json", "items_of",
           "parse_touch", "parse_conversion", "parse_items", "TOUCH_FIELDS", "CONVERSION_FIELDS"]
