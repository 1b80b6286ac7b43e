"""The fake OpenID Connect provider of the sign-in browser test is a real one: Authlib's own client goes
through discovery, the account chooser, the code exchange with PKCE, verifies the RS256 ID token against
the JWKS and reads userinfo; bad requests are refused."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.browser.oidc_provider import OIDCProvider

REDIRECT = "http://127.0.0.1:9/oauth2callback"


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider({"ann@acme.example": "sub-ann", "vic@acme.example": "sub-vic"},
                      client_id="suite", client_secret="s3cret") as provider:
        yield provider


def _sign_in(idp, account: str, *, secret: str = "s3cret", verifier: str | None = None):
    meta = httpx.get(idp.metadata_url).json()
    client = OAuth2Client("suite", secret, scope="openid email profile", redirect_uri=REDIRECT,
                          code_challenge_method="S256")
    code_verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce)
    chooser = httpx.get(url)
    assert chooser.status_code == 200 and account in chooser.text
    answer = httpx.post(url, data={"account": account})
    assert answer.status_code == 302
    back = urlparse(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    query = parse_qs(back.query)
    assert query["state"] == [state]
    token = client.fetch_token(meta["token_endpoint"], code=query["code"][0], code_verifier=verifier or code_verifier)
    return meta, client, token, nonce


def test_code_flow_signed_id_token_and_userinfo(idp):
    meta, client, token, nonce = _sign_in(idp, "ann@acme.example")
    assert meta["issuer"] == idp.issuer and "S256" in meta["code_challenge_methods_supported"]
    keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
    assert all("d" not in k.as_dict() for k in keys.keys)  # only the public key is published
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256" and decoded.header["kid"] == idp.key.kid
    claims = decoded.claims
    assert (claims["iss"], claims["aud"], claims["sub"], claims["email"], claims["nonce"]) == (
        idp.issuer, ["suite"], "sub-ann", "ann@acme.example", nonce)
    assert claims["exp"] > claims["iat"]
    info = client.get(meta["userinfo_endpoint"]).json()
    assert (info["sub"], info["email"]) == ("sub-ann", "ann@acme.example")
    assert httpx.get(meta["userinfo_endpoint"], headers={"Authorization": "Bearer nope"}).status_code == 401


def test_refusals(idp):
    from authlib.integrations.base_client import OAuthError

    with pytest.raises(OAuthError, match="invalid_client"):
        _sign_in(idp, "vic@acme.example", secret="wrong")
    with pytest.raises(OAuthError, match="invalid_grant"):
        _sign_in(idp, "vic@acme.example", verifier=generate_token(48))  # PKCE: another verifier
    # a redirect URI the client did not register is refused on the provider's page, never redirected to
    url = (f"{idp.issuer}/authorize?response_type=code&client_id=suite&scope=openid+email&nonce=n1&state=s1"
           f"&code_challenge={'a' * 43}&code_challenge_method=S256&redirect_uri=https%3A%2F%2Fevil.example%2Fcb")
    answer = httpx.get(url)
    assert answer.status_code == 400 and re.search("redirect", answer.text, re.I)
    # no account chosen: the app is told access_denied
    good = url.replace("https%3A%2F%2Fevil.example%2Fcb", "http%3A%2F%2F127.0.0.1%3A9%2Foauth2callback")
    back = httpx.post(good, data={"account": "stranger@evil.example"})
    assert back.status_code == 302 and "error=access_denied" in back.headers["location"]
