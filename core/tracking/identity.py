"""Identity fields of a conversion, normalized and hashed once per platform, at the collector.

The platforms hash the same person differently, so one normalization cannot serve both:

* **Meta** (Conversions API ``user_data``): trim + lower case; phones as digits with their country
  code and no ``+`` (``+44 844 412 4653`` -> ``448444124653``); names without punctuation; city
  without spaces; US states as their two-letter code; US zip codes cut to 5 digits; gender ``f``/``m``; birth date ``YYYYMMDD``;
  country as ISO alpha-2. ``external_id`` is the hashed user key.
* **Google** (Data Manager, Google Ads enhanced conversions, GA4 ``user_data``): trim + lower case;
  for ``gmail.com`` / ``googlemail.com`` every dot and any ``+suffix`` of the local part removed;
  phones in E.164 *with* ``+``; postal code and country code are sent in clear.

The phone's country code is added here (the Meta SDK never adds one: ``07911 123456`` would become
``7911123456``), from the number itself (``+``/``00``), else the conversion's ``country``, else the
workspace's default phone region; a national number with no known region is dropped rather than
hashed wrong. A value that already is a SHA-256 hex digest is passed through untouched (it cannot be
re-normalized). Only hashes (and Google's clear postal code / country) are ever stored.

References: Meta, "Customer Information Parameters"; Google Ads API, "Normalize and hash
user-provided data"; GA4 Measurement Protocol, "Send user-provided data".

>>> meta_phone("+44 844 412 4653")
'448444124653'
>>> google_phone("(650) 555-1212", "US")
'+16505551212'
>>> google_email(" Jane.Doe+news@GoogleMail.com ")
'janedoe@googlemail.com'
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

import phonenumbers

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GMAIL = frozenset({"gmail.com", "googlemail.com"})
#: Raw identity fields a conversion may carry (raw or already SHA-256 hashed).
IDENTITY_FIELDS = ("email", "phone", "first_name", "last_name", "date_of_birth", "gender", "city", "state", "zip", "country")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_hashed(value: str) -> bool:
    return bool(_SHA256.match(value.strip().lower()))


def _clean(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _no_punctuation(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))


# ---------------------------------------------------------------------------------------- phones
def _parse_phone(raw: str, region: str | None):
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return number


def e164(raw: str, region: str | None = None) -> str | None:
    """``+<country><number>``, or None when no country code can be known or the number is impossible."""
    number = _parse_phone(raw, region)
    return None if number is None else phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def meta_phone(raw: str, region: str | None = None) -> str | None:
    """Meta's phone form: E.164 digits without the ``+``."""
    full = e164(raw, region)
    return None if full is None else full[1:]


def google_phone(raw: str, region: str | None = None) -> str | None:
    """Google's phone form: E.164 with the ``+``."""
    return e164(raw, region)


# ---------------------------------------------------------------------------------------- e-mail
def email_parts(raw: str) -> tuple[str, str] | None:
    """``(local part, domain)`` of an e-mail address in lower case, or None when it is not one: an empty
    side of the ``@``, a domain without a dot, or a space inside (no platform matches those)."""
    text = raw.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or any(ch.isspace() for ch in text):
        return None
    return local, domain


def meta_email(raw: str) -> str | None:
    parts = email_parts(raw)
    return None if parts is None else "@".join(parts)


def google_email(raw: str) -> str | None:
    """Lower case; for gmail.com / googlemail.com every dot and any ``+suffix`` of the local part removed."""
    parts = email_parts(raw)
    if parts is None:
        return None
    local, domain = parts
    if domain in _GMAIL:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"


# ---------------------------------------------------------------------------------------- other fields
def _name(raw: str) -> str:
    return _no_punctuation(raw.strip().lower()).strip()


def _city(raw: str) -> str:
    return re.sub(r"[\s\d]", "", _no_punctuation(raw.strip().lower()))


@functools.cache
def _us_states() -> dict[str, str]:
    """US state, district and territory names (normalized as `_city` does) -> their two-letter codes."""
    import pycountry

    return {_city(s.name): s.code.split("-")[1].lower() for s in pycountry.subdivisions.get(country_code="US")}


def _state(raw: str, country: str | None) -> str:
    """Meta's state: the two-letter code in lower case for the US (``California`` -> ``ca``), else the
    name in lower case without punctuation or spaces."""
    text = _city(raw)
    if (country or "").lower() == "us" and len(text) > 2:
        return _us_states().get(text, text)
    return text


def _zip(raw: str, country: str | None) -> str:
    text = re.sub(r"\s", "", raw.strip().lower())
    if (country or "").lower() == "us":
        text = text.split("-")[0][:5]
    return text


def _gender(raw: str) -> str | None:
    text = raw.strip().lower()
    return {"f": "f", "female": "f", "w": "f", "woman": "f", "m": "m", "male": "m", "man": "m"}.get(text)


def _birth_date(raw: str) -> str | None:
    digits = re.sub(r"\D", "", raw)
    return digits if len(digits) == 8 else None


def _hash_or(value: str | None, normalize) -> str | None:
    """The SHA-256 of the normalized value; an already-hashed value as given; None if unusable."""
    value = _clean(value)
    if value is None:
        return None
    if is_hashed(value):
        return value.lower()
    normalized = normalize(value)
    return sha256(normalized) if normalized else None


def country_code(raw) -> str | None:
    """ISO 3166 alpha-2, lower case, or None."""
    import pycountry

    text = re.sub(r"[^A-Za-z]", "", str(raw or ""))
    if len(text) != 2 or pycountry.countries.get(alpha_2=text.upper()) is None:
        return None
    return text.lower()


def hashed_identity(fields: dict, user_key: str, default_region: str | None = None) -> dict:
    """``{"meta": {...}, "google": {...}}``: each platform's identifiers of one conversion, hashed.

    ``fields`` holds the raw (or already hashed) identity fields named in `IDENTITY_FIELDS`.
    """
    country = country_code(fields.get("country")) if not is_hashed(str(fields.get("country") or "x")) else None
    region = (country or default_region or "").upper() or None
    phone = _clean(fields.get("phone"))
    meta = {
        "em": _hash_or(fields.get("email"), meta_email),
        "ph": phone.lower() if phone and is_hashed(phone) else _hash_or(phone, lambda p: meta_phone(p, region)),
        "fn": _hash_or(fields.get("first_name"), _name),
        "ln": _hash_or(fields.get("last_name"), _name),
        "db": _hash_or(fields.get("date_of_birth"), _birth_date),
        "ge": _hash_or(fields.get("gender"), _gender),
        "ct": _hash_or(fields.get("city"), _city),
        "st": _hash_or(fields.get("state"), lambda st: _state(st, country)),
        "zp": _hash_or(fields.get("zip"), lambda z: _zip(z, country)),
        "country": _hash_or(fields.get("country"), country_code),
        "external_id": sha256(str(user_key)),
    }
    google = {
        "email": _hash_or(fields.get("email"), google_email),
        "phone": phone.lower() if phone and is_hashed(phone) else _hash_or(phone, lambda p: google_phone(p, region)),
        "first_name": _hash_or(fields.get("first_name"), _name),
        "last_name": _hash_or(fields.get("last_name"), _name),
        "postal_code": (_zip(fields["zip"], country) or None) if _clean(fields.get("zip")) and not is_hashed(str(fields["zip"])) else None,
        "country": country,
    }
    return {"meta": {k: v for k, v in meta.items() if v}, "google": {k: v for k, v in google.items() if v}}


__all__ = ["IDENTITY_FIELDS", "sha256", "is_hashed", "e164", "meta_phone", "google_phone", "email_parts", "meta_email", "google_email",
           "country_code", "hashed_identity"]
