"""Normalization and hashing against the platforms' documented examples; Meta and Google differ."""

from __future__ import annotations

import hashlib

import pytest

from core.tracking.identity import google_email, google_phone, hashed_identity, meta_phone


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("raw,region,expected", [
    ("+44 844 412 4653", None, "448444124653"),  # Meta's (and Snap's) documented example: no +, country code kept
    ("(650) 555-1212", "US", "16505551212"),  # US national number: country code 1 added by us
    ("07911 123456", "GB", "447911123456"),  # the SDK alone would hash 7911123456 (wrong)
    ("0044 7911 123456", None, "447911123456"),  # 00 international prefix
], ids=["meta-docs-example", "us-national", "uk-national-gets-44", "double-zero-prefix"])
def test_meta_phone_has_country_code_and_no_plus(raw, region, expected):
    assert meta_phone(raw, region) == expected


def test_meta_documented_phone_hash():
    """Meta's payload example hashes 12345678901 as 254aa248…: the same digest, the same rule (digits only)."""
    identity = hashed_identity({"phone": "+1 234 567 8901"}, "u")
    assert identity["meta"]["ph"] == "254aa248acb47dd654ca3ea53f48c2c26d641d23d7e2e93a1ec56258df7674c4"


def test_national_number_without_region_is_dropped_not_hashed_wrong():
    assert meta_phone("07911 123456") is None
    assert "ph" not in hashed_identity({"phone": "07911 123456"}, "u")["meta"]


@pytest.mark.parametrize("raw,expected", [
    ("+1 650-555-1212", "+16505551212"),  # Google: E.164 with the +
    ("(650) 555-1212", "+16505551212"),
], ids=["international", "national-with-region"])
def test_google_phone_is_e164_with_plus(raw, expected):
    assert google_phone(raw, "US") == expected


@pytest.mark.parametrize("raw,expected", [
    (" Jane.Doe@Gmail.com ", "janedoe@gmail.com"),  # Google's rule: every dot of a gmail local part
    ("j.a.n.e+news@googlemail.com", "jane@googlemail.com"),  # every dot (not only the first) and the +suffix
    ("jane.doe+x@example.com", "jane.doe+x@example.com"),  # other domains: untouched
], ids=["gmail-dots", "googlemail-all-dots-and-plus", "other-domain-untouched"])
def test_google_email_normalization(raw, expected):
    assert google_email(raw) == expected


def test_platforms_hash_the_same_person_differently():
    got = hashed_identity({"email": "Jane.Doe@gmail.com", "phone": "+1 650 555 1212"}, "user-1")
    assert got["meta"]["em"] == sha("jane.doe@gmail.com")  # Meta: lower case only
    assert got["google"]["email"] == sha("janedoe@gmail.com")  # Google: Gmail dots removed
    assert got["meta"]["ph"] == sha("16505551212") and got["google"]["phone"] == sha("+16505551212")
    assert got["meta"]["external_id"] == sha("user-1")


def test_address_fields_follow_meta_rules_and_google_keeps_zip_in_clear():
    got = hashed_identity({"first_name": "Mary", "city": "Menlo Park", "zip": "94035-1234", "country": "US",
                           "gender": "Female", "date_of_birth": "1997-02-16"}, "u")
    meta = got["meta"]
    assert meta["fn"] == sha("mary") and meta["ct"] == sha("menlopark") and meta["zp"] == sha("94035")
    assert meta["country"] == sha("us") and meta["ge"] == sha("f") and meta["db"] == sha("19970216")
    assert got["google"]["postal_code"] == "94035" and got["google"]["country"] == "us"


def test_already_hashed_values_pass_through():
    digest = sha("someone@example.com")
    got = hashed_identity({"email": digest.upper()}, "u")
    assert got["meta"]["em"] == digest and got["google"]["email"] == digest


def test_identifiers_are_never_stored_raw(engine):
    from sqlalchemy import text

    from .conftest import add_conversions

    add_conversions(engine, [{"user_id": "u1", "email": "secret.person@example.com", "phone": "+44 7911 123456"}])
    with engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(text("SELECT * FROM tracked_conversions")) for v in row)
    assert "secret.person" not in dump and "7911" not in dump


@pytest.mark.parametrize("state,country,expected", [
    ("California", "US", "ca"), (" new york ", "us", "ny"), ("CA", "US", "ca"), ("District of Columbia", "US", "dc"),
    ("Bayern", "DE", "bayern"), ("Île-de-France", "FR", "îledefrance"), ("California", None, "california")],
    ids=["us-name", "us-name-spaces", "us-code", "us-district", "de-name", "fr-name-punctuation", "no-country"])
def test_meta_state_is_the_us_two_letter_code(state, country, expected):
    """Meta: "use the 2-character ANSI abbreviation code in lowercase" for US states; elsewhere the name in
    lower case without punctuation or spaces (a site sending "California" matched no one)."""
    fields = {"state": state, "country": country} if country else {"state": state}
    assert hashed_identity(fields, "u")["meta"]["st"] == sha(expected)
