"""Credentials of the real ad platforms: discovery, masking for display, connection test.

Secrets come from a mapping (the page passes ``st.secrets``), the environment, or the encrypted
credential store filled on the Connections page (`core.platforms.secret_store`), in that order: a
key in ``secrets.toml`` or the environment wins over a stored one. Keys are the flat names
documented in ``.streamlit/secrets.toml.example``; the environment variable of a key is its
upper-case name (``meta_access_token`` -> ``META_ACCESS_TOKEN``). The dataclasses below never print
a secret: their ``repr`` masks every secret field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

#: Every key this module reads, per platform (secret ones are masked everywhere they are shown).
META_KEYS = ("meta_access_token", "meta_app_secret", "meta_ad_account_id", "meta_conversion_action_type", "meta_app_id")
GOOGLE_KEYS = (
    "google_developer_token",
    "google_client_id",
    "google_client_secret",
    "google_refresh_token",
    "google_customer_id",
    "google_login_customer_id",
    "google_allow_shared_budgets",
)
SECRET_KEYS = frozenset(
    {"meta_access_token", "meta_app_secret", "google_developer_token", "google_client_secret", "google_refresh_token"}
)
META_REQUIRED = ("meta_access_token", "meta_app_secret", "meta_ad_account_id")
GOOGLE_REQUIRED = (
    "google_developer_token",
    "google_client_id",
    "google_client_secret",
    "google_refresh_token",
    "google_customer_id",
)
DEFAULT_CONVERSION_ACTION_TYPE = "omni_purchase"


class CredentialsError(ValueError):
    """A credential is missing or malformed (the message names the key, never its value)."""


def mask(secret: str | None, *, keep: int = 4) -> str:
    """A secret safe to show: only its last ``keep`` characters, and none of a short one."""
    if not secret:
        return "(not set)"
    secret = str(secret)
    if len(secret) < 12:
        return "•" * 8
    return "•" * 8 + secret[-keep:]


def customer_id_digits(value: str | int | None, key: str = "google_customer_id") -> str:
    """A Google Ads customer id as 10 digits ("123-456-7890" -> "1234567890")."""
    text = re.sub(r"[\s-]", "", str(value or ""))
    if not re.fullmatch(r"\d{10}", text):
        raise CredentialsError(f"{key} must be a 10-digit Google Ads customer id (dashes allowed)")
    return text


def meta_account_id(value: str | int | None) -> str:
    """A Meta ad account id in the Graph form ``act_<digits>``."""
    text = str(value or "").strip()
    digits = text[4:] if text.startswith("act_") else text
    if not digits.isdigit():
        raise CredentialsError("meta_ad_account_id must be digits, optionally prefixed with 'act_'")
    return "act_" + digits


def _masked_repr(obj) -> str:
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        shown = mask(value) if f.metadata.get("secret") else repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _secret():
    return field(metadata={"secret": True})


@dataclass(frozen=True, repr=False, kw_only=True)
class MetaCredentials:
    access_token: str = _secret()
    app_secret: str = _secret()
    ad_account_id: str = ""
    conversion_action_type: str = DEFAULT_CONVERSION_ACTION_TYPE
    app_id: str | None = None  # only needed to exchange a short-lived token for a long-lived one

    def __post_init__(self):
        if not self.access_token or not self.app_secret:
            raise CredentialsError("meta_access_token and meta_app_secret are required")
        object.__setattr__(self, "ad_account_id", meta_account_id(self.ad_account_id))
        if self.app_id is not None and not str(self.app_id).strip().isdigit():
            raise CredentialsError("meta_app_id must be the app's numeric id")

    __repr__ = _masked_repr
    __str__ = _masked_repr


@dataclass(frozen=True, repr=False, kw_only=True)
class GoogleCredentials:
    developer_token: str = _secret()
    client_id: str = ""
    client_secret: str = _secret()
    refresh_token: str = _secret()
    customer_id: str = ""
    login_customer_id: str | None = None
    allow_shared_budgets: bool = False

    def __post_init__(self):
        for name in ("developer_token", "client_id", "client_secret", "refresh_token"):
            if not getattr(self, name):
                raise CredentialsError(f"google_{name} is required")
        object.__setattr__(self, "customer_id", customer_id_digits(self.customer_id))
        if self.login_customer_id:
            object.__setattr__(
                self, "login_customer_id", customer_id_digits(self.login_customer_id, "google_login_customer_id")
            )
        else:
            object.__setattr__(self, "login_customer_id", None)

    __repr__ = _masked_repr
    __str__ = _masked_repr


def _truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Discovered:
    """What was found: the credentials of each configured platform and what is missing or wrong."""

    meta: MetaCredentials | None
    google: GoogleCredentials | None
    problems: dict[str, list[str]]
    sources: dict[str, str]  # key -> "secrets" | "environment" (never the value)

    def configured(self) -> list[str]:
        return [name for name in ("meta", "google") if getattr(self, name) is not None]


#: Where a credential was found, in order of precedence.
SOURCES = ("secrets", "environment", "encrypted store")


def _lookup(key: str, secrets: Mapping | None, environ: Mapping, stored: Mapping | None) -> tuple[object | None, str | None]:
    if secrets is not None:
        try:
            value = secrets.get(key) if hasattr(secrets, "get") else secrets[key]
        except Exception:  # st.secrets raises when no secrets file exists at all
            value = None
        if value not in (None, ""):
            return value, "secrets"
    value = environ.get(key.upper())
    if value not in (None, ""):
        return value, "environment"
    value = (stored or {}).get(key)
    if value not in (None, ""):
        return value, "encrypted store"
    return None, None


def discover(secrets: Mapping | None = None, environ: Mapping | None = None, stored: Mapping | None = None) -> Discovered:
    """Find the credentials of each platform in ``secrets`` (e.g. ``st.secrets``), then the environment,
    then ``stored`` (the decrypted settings of the credential store, `CredentialStore.flat`).

    Each key is looked up on its own, so a key set in ``secrets.toml`` overrides the same key
    stored on the page. A platform with none of its keys is simply not configured; one with some
    keys missing or malformed is reported in ``problems`` by key name.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key in META_KEYS + GOOGLE_KEYS:
        value, source = _lookup(key, secrets, environ, stored)
        if source:
            values[key], sources[key] = value, source
    problems: dict[str, list[str]] = {}

    def build(name, required, factory):
        present = [k for k in required if k in values]
        if not present:
            return None
        missing = [k for k in required if k not in values]
        if missing:
            problems[name] = [f"missing {k}" for k in missing]
            return None
        try:
            return factory()
        except CredentialsError as exc:
            problems[name] = [str(exc)]
            return None

    meta = build(
        "meta",
        META_REQUIRED,
        lambda: MetaCredentials(
            access_token=str(values["meta_access_token"]),
            app_secret=str(values["meta_app_secret"]),
            ad_account_id=str(values["meta_ad_account_id"]),
            conversion_action_type=str(values.get("meta_conversion_action_type") or DEFAULT_CONVERSION_ACTION_TYPE),
            app_id=str(values["meta_app_id"]).strip() if values.get("meta_app_id") else None,
        ),
    )
    google = build(
        "google",
        GOOGLE_REQUIRED,
        lambda: GoogleCredentials(
            developer_token=str(values["google_developer_token"]),
            client_id=str(values["google_client_id"]),
            client_secret=str(values["google_client_secret"]),
            refresh_token=str(values["google_refresh_token"]),
            customer_id=str(values["google_customer_id"]),
            login_customer_id=str(values["google_login_customer_id"]) if values.get("google_login_customer_id") else None,
            allow_shared_budgets=_truthy(values.get("google_allow_shared_budgets", False)),
        ),
    )
    return Discovered(meta=meta, google=google, problems=problems, sources=sources)


def describe(creds: MetaCredentials | GoogleCredentials) -> dict[str, str]:
    """A display table of a platform's settings: identifiers in clear, secrets masked."""
    prefix = "meta_" if isinstance(creds, MetaCredentials) else "google_"
    out = {}
    for f in fields(creds):
        value = getattr(creds, f.name)
        out[prefix + f.name] = mask(value) if f.metadata.get("secret") else ("" if value is None else str(value))
    return out


@dataclass(frozen=True)
class ConnectionStatus:
    """Outcome of a connection test; ``reconnect`` means the credentials were refused."""

    platform: str
    ok: bool
    message: str
    account_name: str = ""
    currency: str = ""
    reconnect: bool = False


def test_connection(platform) -> ConnectionStatus:
    """Ask the platform who we are (one cheap read); never raises, never shows a secret."""
    from .base import AuthError, PlatformError

    name = getattr(platform, "name", "?")
    try:
        info = platform.account_info()
    except AuthError as exc:
        return ConnectionStatus(name, False, f"credentials refused, reconnect: {exc.message}", reconnect=True)
    except PlatformError as exc:
        code = f" (code {exc.code})" if exc.code else ""
        return ConnectionStatus(name, False, f"{exc.message}{code}")
    return ConnectionStatus(name, True, "connected", account_name=info.get("name", ""), currency=info.get("currency", ""))


test_connection.__test__ = False  # not a pytest test despite its name
