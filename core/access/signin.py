"""Sign-in (issue 16 §1): whether an identity provider is configured, who the signed-in person is, and
the rule that an app without sign-in serves only this machine.

Streamlit's own sign-in (``st.login`` / ``st.user``, OpenID Connect) is configured in ``secrets.toml``
under ``[auth]``; the page layer passes the plain values here (`core` never imports Streamlit).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .roles import AccessError, Actor

#: What Streamlit's OpenID Connect sign-in needs in ``[auth]`` (or in one named provider below it).
AUTH_KEYS = ("client_id", "client_secret", "server_metadata_url")


def auth_configured(auth: Mapping[str, Any] | None) -> bool:
    """Whether ``secrets.toml``'s ``[auth]`` section configures an identity provider (directly, or as
    one named provider such as ``[auth.google]``) and the cookie secret Streamlit needs."""
    if not auth or not isinstance(auth, Mapping):
        return False
    if not str(auth.get("redirect_uri") or "").strip() or not str(auth.get("cookie_secret") or "").strip():
        return False
    if all(str(auth.get(k) or "").strip() for k in AUTH_KEYS):
        return True
    return any(isinstance(v, Mapping) and all(str(v.get(k) or "").strip() for k in AUTH_KEYS) for v in auth.values())


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable only from this machine ("" or "0.0.0.0": every
    interface, so not)."""
    text = str(address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def serving_refusal(address: str | None, *, sign_in: bool) -> str | None:
    """Why the app must not serve on ``address``, or None. Without sign-in it runs in single-user local
    mode, where whoever reaches it is admin of every workspace: only a loopback address is allowed."""
    if sign_in or is_loopback(address):
        return None
    where = str(address or "").strip() or "every network interface"
    return (f"The app is bound to {where} but no sign-in is configured. Without sign-in it runs in single-user "
            "local mode (whoever reaches it is admin of every workspace), so it serves only this machine: bind it "
            "to 127.0.0.1 (server.address in .streamlit/config.toml), or configure an identity provider in "
            "secrets.toml's [auth] section (see secrets.toml.example) and add members with `python -m core members add`.")


def client_refusal(remote_ip: str | None, *, sign_in: bool) -> str | None:
    """Why a session from ``remote_ip`` must not be served, or None: without sign-in only this machine may
    use the app, however the server was started (``streamlit run`` checks its address at start; a server
    started another way, or behind a forwarded port, is caught here). ``None`` is Streamlit's loopback."""
    if sign_in or remote_ip is None or is_loopback(remote_ip):
        return None
    return (f"This app runs in single-user local mode (no sign-in is configured) and serves only this machine; "
            f"this connection comes from {remote_ip}. Configure an identity provider in secrets.toml's [auth] "
            "section (see secrets.toml.example) and add members with `python -m core members add`.")


def signed_in_actor(user: Mapping[str, Any], *, entry: str = "page") -> Actor:
    """The actor of a signed-in person from the provider's claims (``st.user``): e-mail and subject."""
    email = str(user.get("email") or "").strip()
    if not email:
        raise AccessError("the identity provider gave no e-mail address for this account; an e-mail is what "
                          "workspace membership is granted to (ask for the 'email' scope)")
    return Actor.user(email=email, subject=str(user.get("sub") or ""), name=str(user.get("name") or ""), entry=entry)


__all__ = ["AUTH_KEYS", "auth_configured", "client_refusal", "is_loopback", "serving_refusal", "signed_in_actor"]
