"""Getting long-lived platform credentials from the page: Google's installed-app OAuth flow and Meta's
long-lived token exchange.

Google Ads
----------
A refresh token comes from the OAuth 2.0 flow for installed applications (``google-auth-oauthlib``,
client type "installed", i.e. a *Desktop app* OAuth client): the user opens the authorization URL,
consents to the ``adwords`` scope, and Google redirects the browser to a loopback address. Here that
address is the app's own Connections page (``http://127.0.0.1:<port>/connections``), which Google
accepts for Desktop clients on any port; the page receives ``code`` and ``state`` and exchanges the
code (with the PKCE verifier, S256) for tokens. Offline access and a consent prompt make Google
return a refresh token. The pending sign-in (state, verifier) survives the browser round trip in the
encrypted credential store, never in the URL.

Meta
----
A user token from the Graph API Explorer or Facebook Login lives about an hour. The app exchanges
it (``GET /oauth/access_token?grant_type=fb_exchange_token``) with its app id and app secret for a
long-lived token of about 60 days.

Both are tested offline: the real libraries build the requests, a transport-level fake answers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import requests

from .credentials import CredentialsError

__all__ = ["GOOGLE_ADS_SCOPE", "GooglePending", "google_sign_in", "google_finish", "meta_long_lived_token", "MetaToken"]

GOOGLE_ADS_SCOPE = "https://www.googleapis.com/auth/adwords"
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GRAPH_URL = "https://graph.facebook.com"
TIMEOUT = 20.0


def _client_config(client_id: str, client_secret: str, redirect_uri: str) -> dict:
    return {"installed": {"client_id": client_id, "client_secret": client_secret, "auth_uri": GOOGLE_AUTH_URI,
                          "token_uri": GOOGLE_TOKEN_URI, "redirect_uris": [redirect_uri]}}


@dataclass(frozen=True, repr=False)
class GooglePending:
    """A sign-in on its way through Google: what the page needs to finish it (kept encrypted meanwhile)."""

    url: str
    state: str
    code_verifier: str
    client_id: str
    client_secret: str
    redirect_uri: str

    def __repr__(self) -> str:  # the verifier and the client secret are secrets
        return f"GooglePending(state={self.state[:6]}..., redirect_uri={self.redirect_uri!r})"

    def to_store(self) -> dict[str, str]:
        return {"state": self.state, "code_verifier": self.code_verifier, "client_id": self.client_id,
                "client_secret": self.client_secret, "redirect_uri": self.redirect_uri, "url": self.url}

    @classmethod
    def from_store(cls, values: dict[str, str]) -> "GooglePending":
        return cls(**{k: values[k] for k in ("url", "state", "code_verifier", "client_id", "client_secret", "redirect_uri")})


def _check_loopback(redirect_uri: str) -> None:
    from urllib.parse import urlparse

    u = urlparse(redirect_uri)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise CredentialsError(
            f"Google's installed-app sign-in returns to a loopback address (http://127.0.0.1:<port>/...), not {u.scheme}://"
            f"{u.hostname}: open the app on this machine at 127.0.0.1, or paste a refresh token instead")


def google_sign_in(client_id: str, client_secret: str, redirect_uri: str) -> GooglePending:
    """Start the installed-app flow: the authorization URL (offline access, consent, PKCE S256) and what
    finishing it needs. Raises `CredentialsError` for a missing client id/secret or a non-loopback redirect."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    if not client_id or not client_secret:
        raise CredentialsError("google_client_id and google_client_secret are needed to sign in with Google")
    _check_loopback(redirect_uri)
    flow = InstalledAppFlow.from_client_config(_client_config(client_id, client_secret, redirect_uri), scopes=[GOOGLE_ADS_SCOPE],
                                               redirect_uri=redirect_uri)
    url, state = flow.authorization_url(access_type="offline", prompt="consent", include_granted_scopes="true",
                                        state=secrets.token_urlsafe(24))
    return GooglePending(url, state, flow.code_verifier, client_id, client_secret, redirect_uri)


def google_finish(pending: GooglePending, code: str, state: str) -> str:
    """Exchange the authorization ``code`` Google sent back for a refresh token.

    Raises `CredentialsError` when the state does not match the pending sign-in (another tab, a
    forged redirect), when Google refuses the code, or when it returns no refresh token.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error

    if not secrets.compare_digest(str(state), pending.state):
        raise CredentialsError("the sign-in answer does not belong to the sign-in started here (state mismatch): start again")
    if not code:
        raise CredentialsError("Google sent no authorization code back: the sign-in was cancelled or refused")
    flow = InstalledAppFlow.from_client_config(_client_config(pending.client_id, pending.client_secret, pending.redirect_uri),
                                               scopes=[GOOGLE_ADS_SCOPE], redirect_uri=pending.redirect_uri, state=pending.state,
                                               code_verifier=pending.code_verifier, autogenerate_code_verifier=False)
    try:
        token = flow.fetch_token(code=code, timeout=TIMEOUT)
    except OAuth2Error as exc:
        raise CredentialsError(f"Google refused the sign-in: {exc.error}{': ' + exc.description if exc.description else ''}") from None
    except requests.RequestException as exc:
        raise CredentialsError(f"could not reach Google to finish the sign-in ({type(exc).__name__})") from None
    refresh = token.get("refresh_token")
    if not refresh:
        raise CredentialsError("Google returned no refresh token: remove the app's access in your Google account and sign in again")
    return str(refresh)


@dataclass(frozen=True, repr=False)
class MetaToken:
    """A long-lived Meta user token and how long it lives (seconds; None when Meta does not say)."""

    access_token: str
    expires_in: int | None

    def __repr__(self) -> str:
        return f"MetaToken(expires_in={self.expires_in!r})"


def meta_long_lived_token(app_id: str, app_secret: str, short_lived_token: str, *, api_version: str | None = None,
                          session: requests.Session | None = None) -> MetaToken:
    """Exchange a short-lived Meta user token for a long-lived one (about 60 days).

    Raises `CredentialsError` with Meta's own message when it refuses (an expired token, a wrong
    app secret), never echoing a secret.
    """
    from .meta import META_API_VERSION

    if not (app_id and app_secret and short_lived_token):
        raise CredentialsError("meta_app_id, meta_app_secret and a short-lived access token are needed for the exchange")
    if not str(app_id).strip().isdigit():
        raise CredentialsError("meta_app_id must be the app's numeric id")
    http = session or requests.Session()
    try:
        resp = http.get(f"{GRAPH_URL}/{api_version or META_API_VERSION}/oauth/access_token", timeout=TIMEOUT, params={
            "grant_type": "fb_exchange_token", "client_id": str(app_id).strip(), "client_secret": app_secret,
            "fb_exchange_token": short_lived_token})
    except requests.RequestException as exc:
        raise CredentialsError(f"could not reach Meta to exchange the token ({type(exc).__name__})") from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or "access_token" not in body:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        msg = err.get("message") or f"HTTP {resp.status_code}"
        for secret in (app_secret, short_lived_token):
            msg = msg.replace(secret, "•••")
        code = f" (code {err['code']})" if err.get("code") else ""
        raise CredentialsError(f"Meta refused the token exchange: {msg}{code}")
    expires = body.get("expires_in")
    return MetaToken(str(body["access_token"]), int(expires) if expires is not None else None)
