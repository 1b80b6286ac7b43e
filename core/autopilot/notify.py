"""Run summaries out of the app: by e-mail (SMTP) and to a Slack-style webhook.

The SMTP server and the webhook URL are secrets (a Slack webhook URL is a credential): they come from
``st.secrets`` or the environment, never from the database, and are never logged or shown in full.
Keys (environment variable = upper case): ``autopilot_smtp_host``, ``autopilot_smtp_port`` (587),
``autopilot_smtp_user``, ``autopilot_smtp_password``, ``autopilot_smtp_from``,
``autopilot_smtp_security`` (starttls | ssl | none), ``autopilot_webhook_url``.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

import requests

from core.platforms.credentials import mask
from core.redact import register_secret

KEYS = ("autopilot_smtp_host", "autopilot_smtp_port", "autopilot_smtp_user", "autopilot_smtp_password",
        "autopilot_smtp_from", "autopilot_smtp_security", "autopilot_webhook_url")
SECURITY = ("starttls", "ssl", "none")


@dataclass(frozen=True)
class NotifyConfig:
    """Where summaries go; ``repr`` never shows the password or the webhook URL."""

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_security: str = "starttls"
    webhook_url: str | None = field(default=None, repr=False)
    timeout: float = 15.0

    def __post_init__(self):
        if self.smtp_security not in SECURITY:
            raise ValueError(f"autopilot_smtp_security must be one of {SECURITY}")

    @property
    def email_ready(self) -> bool:
        return bool(self.smtp_host and self.smtp_from)

    @property
    def webhook_ready(self) -> bool:
        return bool(self.webhook_url)

    def describe(self) -> dict[str, str]:
        """What is configured, safe to show (secrets masked)."""
        return {"smtp": f"{self.smtp_host}:{self.smtp_port} ({self.smtp_security}) from {self.smtp_from}"
                if self.email_ready else "(not set)",
                "smtp_password": mask(self.smtp_password), "webhook_url": mask(self.webhook_url, keep=6)}


def notify_config(secrets: Mapping | None = None, environ: Mapping | None = None) -> NotifyConfig:
    """The configuration from ``secrets`` (e.g. ``st.secrets``) first, else the environment."""
    environ = os.environ if environ is None else environ
    values = {}
    for key in KEYS:
        v = None
        try:
            v = secrets.get(key) if secrets is not None else None
        except Exception:  # st.secrets without a secrets.toml
            v = None
        if v in (None, ""):
            v = environ.get(key.upper())
        if v not in (None, ""):
            values[key.removeprefix("autopilot_")] = v
    if "smtp_port" in values:
        try:
            values["smtp_port"] = int(values["smtp_port"])
        except ValueError:
            raise ValueError("autopilot_smtp_port must be a port number") from None
    register_secret(values.get("smtp_password"), values.get("webhook_url"))  # never in a log line (core.redact)
    return NotifyConfig(**values)


def summary_text(summary: dict) -> tuple[str, str]:
    """(subject, plain-text body) of a run summary: what changed, what waits, what was blocked and why."""
    head = summary.get("headline", "autopilot run")
    lines = [head, ""]
    for title, key in (("Executed", "executed"), ("Waiting for review", "waiting"), ("Blocked", "blocked"),
                       ("Held (not proposed today)", "held"), ("Outcomes outside their predicted band", "flagged")):
        items = summary.get(key) or []
        lines.append(f"{title}: {len(items)}")
        for it in items[:50]:
            lines.append(f"  - {it.get('text', it)}")
        lines.append("")
    for note in summary.get("notes") or []:
        lines.append(f"Note: {note}")
    return f"[Marketing Suite] {head}", "\n".join(lines).rstrip() + "\n"


def send_email(config: NotifyConfig, recipients: Sequence[str], subject: str, body: str) -> None:
    """Send one plain-text e-mail; raises `OSError` / `smtplib.SMTPException` with the server's answer."""
    if not config.email_ready:
        raise ValueError("e-mail is not configured: set autopilot_smtp_host and autopilot_smtp_from")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = config.smtp_from, ", ".join(recipients), subject
    msg.set_content(body)
    if config.smtp_security == "ssl":
        server = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=config.timeout,
                                  context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout)
    with server:
        if config.smtp_security == "starttls":
            server.starttls(context=ssl.create_default_context())
        if config.smtp_user:
            server.login(config.smtp_user, config.smtp_password or "")
        server.send_message(msg, to_addrs=list(recipients))


def webhook_payload(summary: dict) -> dict:
    """Slack-style JSON: a ``text`` fallback and one section block per part of the summary."""
    subject, body = summary_text(summary)
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": subject[:150]}}]
    for part in body.split("\n\n"):
        if part.strip():
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": part.strip()[:2900]}})
    return {"text": subject, "blocks": blocks[:50]}


def send_webhook(config: NotifyConfig, summary: dict) -> int:
    """POST the summary to the webhook; returns the HTTP status, raises on an error answer."""
    if not config.webhook_ready:
        raise ValueError("the webhook is not configured: set autopilot_webhook_url")
    resp = requests.post(config.webhook_url, json=webhook_payload(summary), timeout=config.timeout)
    if resp.status_code >= 400:
        raise OSError(f"the webhook answered HTTP {resp.status_code}")
    return resp.status_code


def deliver(config: NotifyConfig | None, summary: dict, *, emails: Sequence[str] = (), webhook: bool = False) -> dict:
    """Send the summary where asked; returns what happened per channel (never raises, never shows a secret)."""
    out: dict[str, str] = {}
    config = config or NotifyConfig()
    if emails:
        try:
            subject, body = summary_text(summary)
            send_email(config, emails, subject, body)
            out["email"] = f"sent to {len(emails)} recipient(s)"
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            out["email"] = f"not sent: {type(exc).__name__}: {_scrub(str(exc), config)}"
    if webhook:
        try:
            out["webhook"] = f"delivered (HTTP {send_webhook(config, summary)})"
        except (OSError, requests.RequestException, ValueError) as exc:
            out["webhook"] = f"not delivered: {type(exc).__name__}: {_scrub(str(exc), config)}"
    return out


def _scrub(text: str, config: NotifyConfig) -> str:
    for secret in (config.smtp_password, config.webhook_url):
        if secret:
            text = text.replace(secret, "***")
    return text[:500]
