"""Per-workspace settings of the conversion destinations (Meta, Google, GA4) and of the collector.

Identifiers and switches live in the database (``tracking_destinations``), edited on the Tracking
page; secrets never do: they come from ``.streamlit/secrets.toml`` or the environment
(`secret_values`), like the ad platforms' credentials, and are only ever shown masked.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from core.access import Role, guarded
from core.platforms.credentials import customer_id_digits, mask
from core.store.db import transaction
from core.store.models import TrackingDestination, utcnow

DESTINATIONS = ("meta", "google", "ga4")
LABELS = {"meta": "Meta Conversions API", "google": "Google Ads (Data Manager / Google Ads API)", "ga4": "GA4 Measurement Protocol"}
#: How long after the conversion a destination still accepts it; later rows expire unsent. Meta refuses
#: events older than 7 days and GA4 more than 72 hours back; a margin keeps a request from landing late.
DEADLINES = {"meta": dt.timedelta(days=7) - dt.timedelta(minutes=15),
             "ga4": dt.timedelta(hours=72) - dt.timedelta(minutes=15),
             "google": dt.timedelta(days=90)}
#: Destinations that need the user's ad_user_data consent (the others get the event with consent denied).
CONSENT_REQUIRED = frozenset({"meta", "google"})
GOOGLE_APIS = ("data_manager", "google_ads")
LDU_MODES = ("off", "geolocate", "california")
#: Secret names read from secrets.toml / the environment (upper case), per destination.
SECRET_KEYS = {
    "meta": ("meta_capi_access_token", "meta_access_token", "meta_app_secret"),
    "google": ("google_client_id", "google_client_secret", "google_refresh_token", "google_developer_token"),
    "ga4": ("ga4_api_secret",),
}
#: Where tests point the destinations at local fakes (never set in production).
ENDPOINT_ENV = {"meta": "MS_TRACKING_META_GRAPH_URL", "ga4": "MS_TRACKING_GA4_URL",
                "google_ads": "MS_TRACKING_GOOGLE_ADS_ENDPOINT", "data_manager": "MS_TRACKING_DATAMANAGER_ENDPOINT"}


#: Conversion types -> Meta standard event names (the browser pixel must track the same name for
#: de-duplication); any other type is sent as a custom event under its own name.
META_EVENT_NAMES = {"purchase": "Purchase", "lead": "Lead", "signup": "CompleteRegistration", "sign_up": "CompleteRegistration",
                    "complete_registration": "CompleteRegistration", "add_to_cart": "AddToCart",
                    "initiate_checkout": "InitiateCheckout", "begin_checkout": "InitiateCheckout", "subscribe": "Subscribe",
                    "start_trial": "StartTrial", "contact": "Contact", "schedule": "Schedule", "submit_application": "SubmitApplication",
                    "add_payment_info": "AddPaymentInfo", "view_content": "ViewContent", "search": "Search"}


def meta_event_name(conversion_type: str) -> str:
    return META_EVENT_NAMES.get(conversion_type, conversion_type)


def ga4_event_name(conversion_type: str) -> str:
    """GA4 event names: letters, digits and underscores, starting with a letter, at most 40 characters."""
    name = re.sub(r"[^a-z0-9_]", "_", conversion_type.lower()).strip("_") or "conversion"
    return (name if name[0].isalpha() else "c_" + name)[:40]


def idempotency_key(destination: str, row: dict) -> str:
    """What makes a re-send count once: Meta event_id + event_name; Google and GA4 the order / transaction id."""
    if destination == "meta":
        return f"{row['event_id']}|{meta_event_name(row['type'])}"
    return row.get("order_id") or row["event_id"]


class ConfigError(ValueError):
    """A destination setting is malformed (the message names it)."""


@dataclass(frozen=True)
class Destination:
    """One destination of one workspace: switches and identifiers (no secrets)."""

    name: str
    enabled: bool = False
    test_mode: bool = True
    settings: dict = field(default_factory=dict)

    def conversion_action(self, conversion_type: str) -> str | None:
        """Google: the conversion action id for a conversion type (``*`` is the fallback)."""
        actions = self.settings.get("conversion_actions") or {}
        return actions.get(conversion_type) or actions.get("*")


@dataclass(frozen=True)
class CollectorSettings:
    """Workspace-wide rules of the collector."""

    phone_region: str | None = None  # ISO alpha-2 for national phone numbers without a country code
    assume_consent: bool = False  # treat a conversion that says nothing about ad_user_data as consented


def _check(name: str, settings: dict) -> dict:
    s = {k: v for k, v in dict(settings or {}).items() if v not in (None, "")}
    if name == "meta":
        if "pixel_id" in s and not re.fullmatch(r"\d{5,20}", str(s["pixel_id"]).strip()):
            raise ConfigError("Meta pixel id must be digits")
        if s.get("ldu", "off") not in LDU_MODES:
            raise ConfigError(f"Limited Data Use must be one of {', '.join(LDU_MODES)}")
    elif name == "google":
        if s.get("api", "data_manager") not in GOOGLE_APIS:
            raise ConfigError(f"Google API must be one of {', '.join(GOOGLE_APIS)}")
        for key in ("customer_id", "login_customer_id"):
            if key in s:
                s[key] = customer_id_digits(s[key], key)
        actions = s.get("conversion_actions") or {}
        if not isinstance(actions, dict) or not all(re.fullmatch(r"\d{1,20}", str(v).strip()) for v in actions.values()):
            raise ConfigError("Google conversion actions map a conversion type (or *) to a numeric conversion action id")
        s["conversion_actions"] = {str(k).strip().lower(): str(v).strip() for k, v in actions.items()}
    elif name == "ga4":
        if "measurement_id" in s and not re.fullmatch(r"G-[A-Z0-9]{4,20}", str(s["measurement_id"]).strip()):
            raise ConfigError("GA4 measurement id looks like G-XXXXXXX")
    elif name == "collector":
        if "phone_region" in s:
            from .identity import country_code

            if country_code(s["phone_region"]) is None:
                raise ConfigError("default phone region must be an ISO two-letter country code")
            s["phone_region"] = str(s["phone_region"]).upper()
    else:
        raise ConfigError(f"unknown destination {name!r}")
    return s


def _destinations(rows) -> dict[str, Destination]:
    """Every destination from a workspace's stored rows (name, enabled, test_mode, settings); unconfigured ones disabled."""
    by_name = {r.name: r for r in rows}
    return {n: Destination(n, bool(by_name[n].enabled), bool(by_name[n].test_mode), dict(by_name[n].settings or {}))
            if n in by_name else Destination(n) for n in DESTINATIONS}


def _collector_settings(row) -> CollectorSettings:
    settings = dict(row.settings or {}) if row is not None else {}
    return CollectorSettings(settings.get("phone_region"), bool(settings.get("assume_consent", False)))


def load_destinations(engine, workspace_id: str) -> dict[str, Destination]:
    """Every destination of the workspace (unconfigured ones disabled)."""
    with transaction(engine, workspace_id) as s:
        return _destinations(s.scalars(select(TrackingDestination)))


def load_collector_settings(engine, workspace_id: str) -> CollectorSettings:
    with transaction(engine, workspace_id) as s:
        return _collector_settings(s.scalar(select(TrackingDestination).where(TrackingDestination.name == "collector")))


def delivery_settings(conn, workspace_ids) -> dict[str, tuple[dict[str, Destination], CollectorSettings]]:
    """Per workspace, its destinations and collector rules as committed now, read on ``conn`` inside the
    caller's transaction (ONE statement for all the workspaces): what decides a new conversion's outbox
    rows. On PostgreSQL the rows are read ``FOR SHARE``, so a change on the Tracking page commits either
    before the caller's transaction reads them or after it commits, never in between (on SQLite the
    caller already holds the write lock)."""
    t = TrackingDestination.__table__
    found = conn.execute(select(t.c.workspace_id, t.c.name, t.c.enabled, t.c.test_mode, t.c.settings)
                         .where(t.c.workspace_id.in_(sorted(set(workspace_ids))))
                         .with_for_update(read=True)).all()  # FOR SHARE on PostgreSQL; SQLite ignores it
    by_ws: dict[str, list] = {ws: [] for ws in workspace_ids}
    for row in found:
        by_ws[row.workspace_id].append(row)
    return {ws: (_destinations(rows), _collector_settings(next((r for r in rows if r.name == "collector"), None)))
            for ws, rows in by_ws.items()}


@guarded(Role.ADMIN, "tracking.destination", target="{name}")
def save_destination(engine, workspace_id: str, name: str, *, enabled: bool | None = None, test_mode: bool | None = None,
                     settings: dict | None = None, actor: str | None = None) -> Destination:
    """Create or update a destination's switches and identifiers (or ``name="collector"`` settings)."""
    if name not in DESTINATIONS + ("collector",):
        raise ConfigError(f"unknown destination {name!r}")
    with transaction(engine, workspace_id) as s:
        row = s.scalar(select(TrackingDestination).where(TrackingDestination.name == name))
        if row is None:
            row = TrackingDestination(name=name, enabled=False, test_mode=True, settings={})
            s.add(row)
        if settings is not None:
            row.settings = _check(name, settings)
        if enabled is not None:
            row.enabled = bool(enabled)
        if test_mode is not None:
            row.test_mode = bool(test_mode)
        row.updated_at, row.updated_by = utcnow(), actor[:200]
        s.flush()
        return Destination(row.name, row.enabled, row.test_mode, dict(row.settings or {}))


# ------------------------------------------------------------------------------------------ secrets
def read_secrets_file(path: str | Path | None = None) -> dict:
    """``.streamlit/secrets.toml`` (of the working directory, or ``path``) as a dict; {} if absent."""
    path = Path(path) if path else Path.cwd() / ".streamlit" / "secrets.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path.name}: {type(exc).__name__}") from None


def secret_values(name: str, secrets: Mapping | None = None, environ: Mapping | None = None) -> dict[str, tuple[str, str]]:
    """``{key: (value, "secrets" | "environment")}`` of a destination's secrets that are set."""
    environ = os.environ if environ is None else environ
    found = {}
    for key in SECRET_KEYS[name]:
        value = None
        if secrets is not None:
            try:
                value = secrets.get(key)
            except Exception:  # st.secrets without a file
                value = None
            if value not in (None, ""):
                found[key] = (str(value), "secrets")
                continue
        value = environ.get(key.upper())
        if value not in (None, ""):
            found[key] = (str(value), "environment")
    return found


def describe_secrets(name: str, secrets: Mapping | None = None, environ: Mapping | None = None) -> list[dict]:
    """A display table of a destination's secrets: masked value and where it came from."""
    values = secret_values(name, secrets, environ)
    return [{"setting": key, "value": mask(values[key][0]) if key in values else "(not set)",
             "from": values[key][1] if key in values else ""} for key in SECRET_KEYS[name]]


__all__ = ["META_EVENT_NAMES", "meta_event_name", "ga4_event_name", "idempotency_key", "DESTINATIONS", "LABELS", "DEADLINES", "CONSENT_REQUIRED", "GOOGLE_APIS", "LDU_MODES", "SECRET_KEYS", "ENDPOINT_ENV",
           "ConfigError", "Destination", "CollectorSettings", "load_destinations", "load_collector_settings", "delivery_settings", "save_destination",
           "read_secrets_file", "secret_values", "describe_secrets"]
