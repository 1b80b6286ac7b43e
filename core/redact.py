"""Secrets never leave the process in clear: URL redaction, text redaction and the one logging filter.

Three tools, one vocabulary of what a credential looks like:

* `redact_url` shows a URL (a database URL, a web address) with its password and every
  credential-like query parameter (``password``, ``api_key``, ``access_token``, ``sslpassword`` ...)
  replaced by ``***``; it never raises and never echoes an unreadable URL.
* `redact_text` scrubs free text (a driver's error, a log line, a traceback): every secret registered
  with `register_secret` (platform tokens, database passwords, as they are loaded), URL passwords,
  ``name=value`` / ``"name": "value"`` pairs with a credential-like name, ``Bearer`` tokens and the
  token shapes of Meta and Google.
* `install_log_redaction` makes every log record of the process pass through `RedactSecrets` when
  it is created (a record factory, so it also covers records of loggers that do not propagate, such
  as the ``google`` tree, whose records reach only Python's last-resort handler), and lets the
  ``google`` loggers propagate to the application's handlers. `core` installs it on import.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
#: A parameter or field whose name contains a strong word anywhere (``sslpassword``, ``appsecret_proof``,
#: ``accessToken``), or a weak word standing alone (``auth``, ``sig``, ``session_id``), is a credential.
#: Weak words only alone: "author: ann" or "sessions: 7" in a report is not a secret.
_STRONG_CREDENTIAL = r"pass(?:word|wd)|secret|token|api[-_]?key|private[-_]?key|access[-_]?key|credential|cookie"
_WEAK_CREDENTIAL = r"pwd|pass|auth|authorization|signature|sig|proof|session[-_]?(?:id|key|token)"
_CREDENTIAL_NAME = rf"(?:{_STRONG_CREDENTIAL}|(?<![a-z])(?:{_WEAK_CREDENTIAL})(?![a-z]))"
_CREDENTIAL_NAME_RE = re.compile(_CREDENTIAL_NAME, re.IGNORECASE)
#: ``name=value``, ``name: value``, ``"name": "value"`` where the name is credential-like.
_PAIR = re.compile(
    r"(?P<key>[A-Za-z0-9_.\-]*" + _CREDENTIAL_NAME + r"[A-Za-z0-9_.\-]*)(?P<kq>[\"']?)(?P<sep>\s*[=:]\s*)(?P<q>[\"']?)"
    r"(?P<value>(?!\*\*\*)[^\s&\"',;)}\]<>]+)",
    re.IGNORECASE,
)
#: The password of ``scheme://user:password@host``.
_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)@")
_BEARER = re.compile(r"\b(?P<kind>Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
#: Token shapes: Meta user/system tokens (EAA...), Google OAuth access (ya29.) and refresh (1//) tokens.
_TOKEN_SHAPES = re.compile(r"\bEAA[A-Za-z0-9]{20,}|\bya29\.[A-Za-z0-9_\-.]{10,}|\b1//[A-Za-z0-9_\-]{10,}")

_secrets: set[str] = set()
_lock = threading.Lock()
#: Secrets shorter than this are not registered (replacing "abc" everywhere would garble text).
MIN_SECRET_LENGTH = 6


def register_secret(*values: object) -> None:
    """Remember secrets (tokens, passwords) so `redact_text` blanks them wherever they turn up."""
    with _lock:
        for value in values:
            text = "" if value is None else str(value)
            if len(text) >= MIN_SECRET_LENGTH:
                _secrets.add(text)


def is_credential_name(name: str) -> bool:
    """Whether a parameter / field name denotes a credential (``password``, ``api_key``, ``access_token``...)."""
    return bool(_CREDENTIAL_NAME_RE.search(str(name)))


def redact_text(text: object) -> str:
    """``text`` with every secret the process knows of and every credential-looking part replaced by ``***``."""
    out = str(text)
    if not out:
        return out
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, MASK)
    out = _USERINFO.sub(lambda m: f"{m['pre']}{MASK}@", out)
    out = _BEARER.sub(lambda m: f"{m['kind']} {MASK}", out)
    out = _PAIR.sub(lambda m: f"{m['key']}{m['kq']}{m['sep']}{m['q']}{MASK}", out)
    return _TOKEN_SHAPES.sub(MASK, out)


def _unreadable(url: str) -> str:
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*(?=://)", str(url))
    return f"{scheme.group(0)}://{MASK}" if scheme else "(an unreadable URL)"


def _redact_sqlalchemy_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.query:
        u = u.set(query={k: (MASK if is_credential_name(k) else v) for k, v in u.query.items()})
    text = u.render_as_string(hide_password=True)
    return text.replace("%2A%2A%2A", MASK)


def _redact_web_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":" + MASK
        netloc = f"{user}@{host}"
    query = urlencode([(k, MASK if is_credential_name(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, "")) if parts.scheme else _unreadable(url)


def redact_url(url: object) -> str:
    """The URL with its password and credential-like query parameters hidden, safe to show, store or log.

    Never raises; an unreadable URL is shown as its scheme only (``postgresql://***``).

    >>> redact_url("postgresql://ann:pw@db/x?sslmode=require&password=pw2")
    'postgresql://ann:***@db/x?password=***&sslmode=require'
    """
    text = str(url)
    try:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text) and not re.match(r"^(https?|wss?|ftp)://", text, re.IGNORECASE):
            out = _redact_sqlalchemy_url(text)
        else:
            out = _redact_web_url(text)
    except Exception:  # not even a URL: show only a scheme-like prefix, never the rest
        return _unreadable(text)
    return redact_text(out)


def url_secrets(url: object) -> list[str]:
    """The secret parts of a URL (its password, credential-like query values), for exact scrubbing."""
    text = str(url)
    found: list[str] = []
    try:
        from sqlalchemy.engine import make_url

        u = make_url(text)
        found += [u.password] if u.password else []
        for k, v in u.query.items():
            if is_credential_name(k):
                found += list(v) if isinstance(v, tuple) else [v]
    except Exception:
        parts = urlsplit(text)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if is_credential_name(k)]
    m = _USERINFO.search(text)
    if m:
        found.append(m["pw"])
    return [str(s) for s in found if s]


def scrub_url(text: object, url: object) -> str:
    """``text`` (e.g. a driver's error message) with ``url`` and each of its secret parts redacted."""
    out = str(text).replace(str(url), redact_url(url))
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        out = out.replace(secret, MASK)
    return redact_text(out)


# ----------------------------------------------------------------------------------------- logging
class RedactSecrets(logging.Filter):
    """Rewrites a record so that its message, exception text and stack carry no secret (never drops it)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, redacted
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact_text(message), ()
        if record.exc_info and not record.exc_text:
            try:
                record.exc_text = self._formatter.formatException(record.exc_info)
            except Exception:
                record.exc_text = repr(record.exc_info[1])
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record._redacted = True
        return True


_installed: dict = {}


def install_log_redaction() -> None:
    """Redact every log record of this process as it is created (idempotent).

    The record factory runs for every logger, whatever its handlers or ``propagate`` flag, so
    urllib3's request lines (``?access_token=...&appsecret_proof=...``) and the Google Ads SDK's
    logging interceptor (fault messages that echo a token) are clean before any handler sees them.
    The ``google`` logger is given a level so google-auth does not switch its propagation off
    (its records would then bypass the application's log and go to stderr unformatted).
    """
    with _lock:
        if _installed.get("factory") is not None and logging.getLogRecordFactory() is _installed["factory"]:
            return
        previous = logging.getLogRecordFactory()
        redactor = RedactSecrets()

        def factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            redactor.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed["factory"] = factory
    google = logging.getLogger("google")
    if google.level == logging.NOTSET:
        google.setLevel(logging.WARNING)
    google.propagate = True


__all__ = ["MASK", "register_secret", "is_credential_name", "redact_text", "redact_url", "url_secrets", "scrub_url",
           "RedactSecrets", "install_log_redaction"]
