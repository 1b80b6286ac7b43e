"""The role model and the acting identity.

Roles are ordered: each includes the rights of the ones below it.

======== =====================================================================================
viewer   read everything
analyst  import data, run attribution, optimize, draft (and dry-run) change plans
approver approve, execute and roll back plans; throw the kill switch
admin    members, connections, write keys, schedules, guardrails, the auto-execute switch
======== =====================================================================================

Besides people there are three kinds of principal: the *local* user of the single-user mode (no
identity provider: admin of every workspace, loopback only), a *collector* write key (may only write
tracked events and conversions into its own workspace), and a schedule of the *autopilot*, which acts
for the admin who switched auto-execute on (or, without auto-execute, for the schedule's owner) and is
checked with that person's current role.
"""

from __future__ import annotations

import os
import re
from enum import IntEnum
from typing import Any


class Role(IntEnum):
    VIEWER = 1
    ANALYST = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    def __str__(self) -> str:
        return self.label


ROLES = tuple(r.label for r in Role)
#: Where an action came from (the audit log's "entry point").
ENTRY_POINTS = ("page", "cli", "collector", "autopilot")
KINDS = ("user", "local", "collector", "autopilot")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccessError(ValueError):
    """An access setting that cannot be stored as asked (unknown role or workspace, bad e-mail, last admin)."""


class AccessDenied(PermissionError):
    """The actor may not do this here. The message names the role required (or why no role helps)."""

    def __init__(self, message: str, *, required: Role | None = None, workspace: str = "", actor: str = ""):
        super().__init__(message)
        self.required, self.workspace, self.actor = required, workspace, actor


def parse_role(value: str | Role) -> Role:
    """``"approver"`` -> `Role.APPROVER`; anything else is a clear `AccessError`."""
    if isinstance(value, Role):
        return value
    text = str(value or "").strip().lower()
    if text not in ROLES:
        raise AccessError(f"unknown role {value!r}: choose one of {', '.join(ROLES)}")
    return Role[text.upper()]


def normalize_email(value: str) -> str:
    """The address as membership compares it (trimmed, lower case); a clear error when it is not one."""
    text = str(value or "").strip().lower()
    if not _EMAIL.match(text) or len(text) > 320:
        raise AccessError(f"not an e-mail address: {value!r}")
    return text


class Actor(str):
    """Who acts. The value *is* the label written into every ``created_by`` / ``actor`` column (the
    e-mail of a signed-in person, the OS user in local mode, ``autopilot (by schedule #3 Daily) for
    ann@example.com`` for a schedule), so code that stores ``actor`` as text keeps working; the identity
    behind it is in the attributes.

    ``kind``: user | local | collector | autopilot; ``subject``: the provider's ``sub`` (``local:<user>``,
    ``key:<id>``, ``schedule:<id>``); ``entry``: page | cli | collector | autopilot; ``on_behalf_of``: the
    person an autopilot schedule acts for; ``workspace``: a collector key's workspace.
    """

    kind: str
    subject: str
    email: str
    name: str
    entry: str
    on_behalf_of: "Actor | None"
    workspace: str
    key_kind: str

    def __new__(cls, label: str, *, kind: str, subject: str = "", email: str = "", name: str = "", entry: str = "cli",
                on_behalf_of: "Actor | None" = None, workspace: str = "", key_kind: str = ""):
        if kind not in KINDS:
            raise ValueError(f"unknown actor kind {kind!r}")
        if entry not in ENTRY_POINTS:
            raise ValueError(f"unknown entry point {entry!r}; one of {ENTRY_POINTS}")
        obj = super().__new__(cls, str(label)[:300])
        obj.__dict__.update(kind=kind, subject=str(subject or ""), email=str(email or ""), name=str(name or ""),
                            entry=entry, on_behalf_of=on_behalf_of, workspace=str(workspace or ""), key_kind=key_kind)
        return obj

    def __setattr__(self, name, value):
        raise AttributeError("an Actor is immutable")

    def __reduce__(self):
        return (_rebuild, (str(self), self.to_dict()))

    # ---------------------------------------------------------------------------- constructors
    @classmethod
    def user(cls, *, email: str, subject: str = "", name: str = "", entry: str = "page") -> "Actor":
        """A person signed in with the identity provider (or named with ``--as`` on the command line)."""
        email = normalize_email(email)
        return cls(email, kind="user", subject=subject, email=email, name=name, entry=entry)

    @classmethod
    def local(cls, name: str | None = None, *, entry: str = "cli") -> "Actor":
        """The single user of local mode (no identity provider): the machine's user."""
        who = (name or os.environ.get("USER") or "local user").strip() or "local user"
        return cls(who, kind="local", subject=f"local:{who}", name=who, entry=entry)

    @classmethod
    def collector(cls, *, key_id: int, workspace: str, key_kind: str = "server", prefix: str = "") -> "Actor":
        """A collector write key: may only write tracked events and conversions into ``workspace``."""
        label = f"collector key #{key_id}" + (f" ({prefix})" if prefix else "")
        return cls(label, kind="collector", subject=f"key:{key_id}", entry="collector", workspace=workspace,
                   key_kind=key_kind)

    @classmethod
    def autopilot(cls, *, schedule_id: int, schedule_name: str, on_behalf_of: "Actor | None") -> "Actor":
        """A schedule acting for ``on_behalf_of`` (whose current role is what counts); the label names both."""
        label = f"autopilot (by schedule #{schedule_id} {schedule_name})"
        if on_behalf_of is not None:
            label += f" for {on_behalf_of}"
        return cls(label, kind="autopilot", subject=f"schedule:{schedule_id}", entry="autopilot",
                   on_behalf_of=on_behalf_of)

    # ---------------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for storing whom a schedule acts for."""
        d = {"label": str(self), "kind": self.kind, "subject": self.subject, "email": self.email, "name": self.name,
             "entry": self.entry, "workspace": self.workspace, "key_kind": self.key_kind}
        if self.on_behalf_of is not None:
            d["on_behalf_of"] = self.on_behalf_of.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Actor":
        d = dict(d)
        behalf = d.pop("on_behalf_of", None)
        label = d.pop("label")
        return cls(label, on_behalf_of=cls.from_dict(behalf) if behalf else None,
                   **{k: v for k, v in d.items() if k in ("kind", "subject", "email", "name", "entry", "workspace",
                                                         "key_kind")})

    def acting_from(self, entry: str) -> "Actor":
        """The same identity, acting through another entry point."""
        d = self.to_dict()
        d["entry"] = entry
        return Actor.from_dict(d)

    @property
    def person(self) -> "Actor":
        """The person behind the action (an autopilot schedule's authority; else the actor itself)."""
        return self.on_behalf_of.person if self.kind == "autopilot" and self.on_behalf_of is not None else self


def _rebuild(label: str, d: dict) -> Actor:
    return Actor.from_dict({**d, "label": label})


__all__ = ["Role", "ROLES", "ENTRY_POINTS", "Actor", "AccessDenied", "AccessError", "parse_role", "normalize_email"]
