"""Write keys of the collector: made once, shown once, stored as SHA-256, revocable.

A key maps a request to its workspace. ``server`` keys (``ms_sk_...``) may use every endpoint;
``browser`` keys (``ms_pk_...``, public by nature: they sit in a web page) may only write touches and
conversions, and only from the origins on their allow-list (CORS). A key is 32 random bytes, so a
plain SHA-256 is the right digest (no salt or slow hash is needed for a secret with 256 bits of
entropy), and lookups stay one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

import idna
from sqlalchemy import select

from core.access import Actor, Role, audit_target, guarded
from core.store.db import check_workspace_id, transaction
from core.store.models import TrackingKey, utcnow

KINDS = ("server", "browser")
_PREFIX = {"server": "ms_sk_", "browser": "ms_pk_"}


class TrackingKeyError(ValueError):
    """A key cannot be made or revoked as asked (the message says why)."""


@dataclass(frozen=True)
class KeyInfo:
    """What a request's key allows: its workspace, kind and origins (never the key itself)."""

    id: int
    workspace_id: str
    kind: str
    origins: tuple[str, ...]
    rate_limit: float | None
    revoked: bool

    @property
    def browser(self) -> bool:
        return self.kind == "browser"

    @cached_property
    def actor(self) -> Actor:
        """The key as a principal: it may write tracked events and conversions into its workspace only
        (one per cached key: every request of the key shares it)."""
        return Actor.collector(key_id=self.id, workspace=self.workspace_id, key_kind=self.kind)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in the Origin header."""
    text = str(origin or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise TrackingKeyError(f"origin {origin!r} must be scheme://host[:port], e.g. https://shop.example.com")
    try:
        port = f":{parts.port}" if parts.port and parts.port != {"http": 80, "https": 443}[parts.scheme] else ""
        # browsers send an internationalized host as punycode (UTS 46): bücher.example -> xn--bcher-kva.example
        host = idna.encode(parts.hostname, uts46=True).decode("ascii") if not parts.hostname.isascii() else parts.hostname
    except (ValueError, idna.IDNAError):
        raise TrackingKeyError(f"origin {origin!r} must be scheme://host[:port] with a valid host and port") from None
    return f"{parts.scheme}://{host.lower()}{port}"


@guarded(Role.ADMIN, "key.create")
def create_key(engine, workspace_id: str, *, kind: str = "server", origins=(), name: str = "",
               rate_limit: float | None = None, actor: str | None = None) -> tuple[str, dict]:
    """Make a key; returns ``(the key, its listing row)``. The key is shown only here, never again."""
    check_workspace_id(workspace_id)
    if kind not in KINDS:
        raise TrackingKeyError(f"kind must be one of {', '.join(KINDS)}")
    allowed = sorted({normalize_origin(o) for o in origins})
    if kind == "browser" and not allowed:
        raise TrackingKeyError("a browser key needs at least one origin (--origin https://shop.example.com)")
    if kind == "server" and allowed:
        raise TrackingKeyError("origins are for browser keys; a server key is used from servers, not pages")
    if rate_limit is not None and not (0 < float(rate_limit) <= 100_000):
        raise TrackingKeyError("rate limit must be between 0 and 100000 requests per second")
    key = _PREFIX[kind] + secrets.token_urlsafe(32)
    with transaction(engine, workspace_id) as s:
        row = TrackingKey(name=(name or "")[:200], prefix=key[:12], key_hash=digest(key), kind=kind, origins=allowed,
                          rate_limit=None if rate_limit is None else float(rate_limit), created_by=actor[:200])
        s.add(row)
        s.flush()
        audit_target(f"{kind} key #{row.id} {row.prefix}…")
        listing = _listing(row)
    return key, listing


def _listing(row: TrackingKey) -> dict:
    return {"id": row.id, "name": row.name, "prefix": row.prefix + "…", "kind": row.kind, "origins": list(row.origins or []),
            "rate_limit": row.rate_limit, "created_at": row.created_at, "created_by": row.created_by,
            "revoked_at": row.revoked_at, "revoked_by": row.revoked_by, "active": row.revoked_at is None}


def list_keys(engine, workspace_id: str) -> list[dict]:
    """The workspace's keys (never the keys themselves: prefix, kind, origins, who and when)."""
    with transaction(engine, workspace_id) as s:
        return [_listing(r) for r in s.scalars(select(TrackingKey).order_by(TrackingKey.id))]


@guarded(Role.ADMIN, "key.revoke", target="key #{key_id}")
def revoke_key(engine, workspace_id: str, key_id: int, *, actor: str | None = None) -> dict:
    """Revoke a key of this workspace (from the next request on); revoking twice is harmless."""
    with transaction(engine, workspace_id) as s:
        row = s.scalar(select(TrackingKey).where(TrackingKey.id == int(key_id)))
        if row is None:
            raise TrackingKeyError(f"key {key_id} does not exist in workspace {workspace_id!r}")
        if row.revoked_at is None:
            row.revoked_at, row.revoked_by = utcnow(), actor[:200]
            s.flush()
        return _listing(row)


def lookup(engine, key: str) -> KeyInfo | None:
    """The key's workspace and rights, or None for an unknown key (revoked keys are returned, flagged)."""
    if not key or len(key) > 200:
        return None
    from sqlalchemy.orm import Session

    with Session(engine) as s:  # the key decides the workspace, so this one read is not workspace-scoped
        row = s.scalar(select(TrackingKey).where(TrackingKey.key_hash == digest(key)))
        if row is None:
            return None
        return KeyInfo(row.id, row.workspace_id, row.kind, tuple(row.origins or ()), row.rate_limit, row.revoked_at is not None)


def browser_origins(engine) -> set[str]:
    """Every origin an active browser key allows (answers CORS preflights, which carry no key)."""
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        rows = s.scalars(select(TrackingKey.origins).where(TrackingKey.kind == "browser", TrackingKey.revoked_at.is_(None)))
        return {o for origins in rows for o in (origins or [])}


__all__ = ["KINDS", "KeyInfo", "TrackingKeyError", "create_key", "list_keys", "revoke_key", "lookup", "browser_origins", "digest",
           "normalize_origin"]
