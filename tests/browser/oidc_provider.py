"""A small OpenID Connect provider on 127.0.0.1 for sign-in tests, built from Authlib's server components.

It serves what Streamlit's ``st.login`` (Authlib's client) uses: discovery
(``/.well-known/openid-configuration``), ``/authorize`` (a one-click account chooser: one button per
known person), ``/token`` (authorization code + PKCE S256, client secret checked, an RS256-signed ID
token with the request's nonce), ``/jwks`` and ``/userinfo`` (bearer token). Everything is in memory;
``issued`` records every ID token's subject, so a test can show the app really went through the provider.

    with OIDCProvider({"ann@acme.example": "sub-ann"}, client_id="suite", client_secret="s3cret") as idp:
        idp.metadata_url  # -> server_metadata_url of secrets.toml's [auth]
"""

from __future__ import annotations

import html
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, UserInfo, UserInfoEndpoint
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server


@dataclass
class Person:
    email: str
    subject: str
    name: str


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]  # exact URIs, or prefixes ending in "*" (the app's port is chosen at run time)
    client_metadata: dict = field(default_factory=dict)

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None  # the request must name its redirect_uri

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri):
        return any(redirect_uri == uri or (uri.endswith("*") and redirect_uri.startswith(uri[:-1]))
                   for uri in self.redirect_uris)

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    person: Person
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time


@dataclass
class Token(TokenMixin):
    access_token: str
    scope: str
    client: Client
    person: Person
    expires_at: float

    def check_client(self, client):
        return client.get_client_id() == self.client.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return int(self.expires_at - time.time())

    def is_expired(self):
        return time.time() >= self.expires_at

    def is_revoked(self):
        return False

    def get_user(self):
        return self.person

    def get_client(self):
        return self.client


def _claims(person: Person, scope: str) -> UserInfo:
    return UserInfo(sub=person.subject, email=person.email, email_verified=True, name=person.name).filter(scope)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OIDCProvider:
    """The provider on a free port of 127.0.0.1, in a thread of the test process (``start``/``stop``, or ``with``)."""

    def __init__(self, people: dict[str, str], *, client_id: str, client_secret: str,
                 redirect_uris: tuple[str, ...] = ("http://127.0.0.1:*",)):
        self.people = {email: Person(email, sub, email.split("@")[0].title()) for email, sub in people.items()}
        self.client = Client(client_id, client_secret, list(redirect_uris))
        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.metadata_url = f"{self.issuer}/.well-known/openid-configuration"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "fake-idp-1", "use": "sig", "alg": "RS256"})
        self.issued: list[str] = []  # the subject of every ID token handed out
        self._codes: dict[str, Code] = {}
        self._tokens: dict[str, Token] = {}
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self.app = self._build()
        self._server = None
        self._thread = None

    # ------------------------------------------------------------------------------ Authlib server
    def _build(self) -> Flask:
        provider = self
        app = Flask("fake_oidc_provider")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 3600}

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                with provider._lock:
                    provider._nonces.add(req.payload.data.get("nonce"))  # a nonce serves one sign-in only
                    provider._codes[code] = Code(
                        code=code, client_id=req.client.client_id, redirect_uri=req.payload.redirect_uri,
                        scope=req.payload.scope, person=req.user, nonce=req.payload.data.get("nonce"),
                        code_challenge=req.payload.data.get("code_challenge"),
                        code_challenge_method=req.payload.data.get("code_challenge_method"))

            def query_authorization_code(self, code, client):
                found = provider._codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                with provider._lock:
                    provider._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.person

        class PKCE(CodeChallenge):
            def get_authorization_code_challenge(self, authorization_code):
                return authorization_code.code_challenge

            def get_authorization_code_challenge_method(self, authorization_code):
                return authorization_code.code_challenge_method

        class IDToken(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return nonce in provider._nonces

            def resolve_client_private_key(self, client):
                return provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_client_claims(self, client):
                return {"iss": provider.issuer, "aud": [client.get_client_id()]}

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": provider.key.kid}

            def generate_user_info(self, person, scope):
                provider.issued.append(person.subject)
                return _claims(person, scope)

        def save_token(token, req):
            with provider._lock:
                provider._tokens[token["access_token"]] = Token(
                    token["access_token"], token.get("scope", ""), req.client, req.user,
                    time.time() + int(token.get("expires_in", 3600)))

        server = AuthorizationServer(app, query_client=lambda cid: self.client if cid == self.client.client_id else None,
                                     save_token=save_token)
        server.register_grant(CodeGrant, [IDToken(require_nonce=True), PKCE(required=True)])

        class Bearer(BearerTokenValidator):
            def authenticate_token(self, token_string):
                return provider._tokens.get(token_string)

        protector = ResourceProtector()
        protector.register_token_validator(Bearer())

        class UserInfoAt(UserInfoEndpoint):
            def get_issuer(self):
                return provider.issuer

            def generate_user_info(self, person, scope):
                return _claims(person, scope)

        server.register_endpoint(UserInfoAt(resource_protector=protector))

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": provider.issuer,
                "authorization_endpoint": f"{provider.issuer}/authorize",
                "token_endpoint": f"{provider.issuer}/token",
                "userinfo_endpoint": f"{provider.issuer}/userinfo",
                "jwks_uri": f"{provider.issuer}/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "claims_supported": ["sub", "email", "email_verified", "name", "iss", "aud", "exp", "iat", "nonce"],
                "code_challenge_methods_supported": ["S256"],
            })

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([provider.key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            if request.method == "GET":
                try:
                    server.get_consent_grant(end_user=None)  # checks client, redirect_uri, scope, PKCE, nonce
                except Exception as exc:  # an invalid request is shown, never redirected to an unchecked URI
                    return f"<h1>Invalid sign-in request</h1><p>{html.escape(str(exc))}</p>", 400
                buttons = "".join(
                    f'<button type="submit" name="account" value="{html.escape(p.email)}">{html.escape(p.email)}</button>'
                    for p in provider.people.values())
                return (f"<!doctype html><title>Fake identity provider</title><h1>Choose an account</h1>"
                        f'<form method="post">{buttons}</form>')
            person = provider.people.get(request.form.get("account", ""))
            grant = server.get_consent_grant(end_user=person)
            return server.create_authorization_response(grant=grant, grant_user=person)  # None: access_denied

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo():
            return server.create_endpoint_response("userinfo")

        return app

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> "OIDCProvider":
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-oidc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "OIDCProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["OIDCProvider"]
