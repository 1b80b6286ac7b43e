"""Platform credentials entered on the Connections page, encrypted at rest.

Each workspace's credentials of a platform are one row of ``stored_credentials``: the settings as
JSON, encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package), plus
display hints that never hold a secret in full (`core.platforms.credentials.mask`).

The key comes, in this order, from

1. ``MARKETING_SUITE_SECRET_KEY`` in the environment, or ``credential_key`` in ``secrets.toml``
   (passed in by the app; `core` never reads ``st.secrets``): a Fernet key, or any passphrase
   (stretched with PBKDF2-HMAC-SHA256);
2. a key file generated once in the user's data directory (``secret.key``, created with owner-only
   permissions 0600; ``MARKETING_SUITE_KEY_FILE`` names another path).

A database shared by several machines needs the same key on each: set it in the environment or in
``secrets.toml``. Credentials in ``secrets.toml`` or the environment win over stored ones
(`core.platforms.credentials.discover`).

>>> key = Fernet.generate_key()
>>> token = encrypt({"meta_access_token": "EAAB" + "x" * 40}, key)
>>> "EAAB" in token
False
>>> decrypt(token, key)["meta_access_token"][:4]
'EAAB'
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from core.access import Role, audit_target, guarded
from core.store.db import transaction
from core.store.models import StoredCredential, utcnow

from .credentials import SECRET_KEYS, CredentialsError, mask

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "CredentialKey", "resolve_key", "encrypt", "decrypt", "CredentialStore"]

#: Environment variable holding the key (a Fernet key or a passphrase).
KEY_ENV = "MARKETING_SUITE_SECRET_KEY"
#: Environment variable naming the generated key file (default: ``secret.key`` in the user data directory).
KEY_FILE_ENV = "MARKETING_SUITE_KEY_FILE"
#: ``secrets.toml`` entry holding the key.
SECRETS_KEY_NAME = "credential_key"
_SALT = b"marketing-suite credential store v1"  # fixed: the key must be derivable again on every start
_PBKDF2_ROUNDS = 480_000


@dataclass(frozen=True, repr=False)
class CredentialKey:
    """An encryption key and where it came from ("environment", "secrets" or the key file's path)."""

    key: bytes
    source: str

    def __repr__(self) -> str:  # never print the key
        return f"CredentialKey(source={self.source!r})"


def _as_fernet_key(text: str) -> bytes:
    """A Fernet key as given, or one stretched from a passphrase."""
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=_SALT, iterations=_PBKDF2_ROUNDS)
    return base64.urlsafe_b64encode(kdf.derive(raw))


def default_key_file() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("marketing-suite", appauthor=False)) / "secret.key"


def resolve_key(secret: str | None = None, environ: Mapping | None = None, key_file: Path | None = None) -> CredentialKey:
    """The credential key: ``secret`` (from ``secrets.toml``), else the environment, else the key file,
    generated once with owner-only permissions.

    Raises `CredentialsError` when the key file exists but is unreadable, malformed, or readable by
    others (the message names the file, never the key).
    """
    environ = os.environ if environ is None else environ
    if secret:
        return CredentialKey(_as_fernet_key(str(secret)), "secrets")
    if environ.get(KEY_ENV):
        return CredentialKey(_as_fernet_key(environ[KEY_ENV]), "environment")
    path = Path(key_file or environ.get(KEY_FILE_ENV) or default_key_file())
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:  # O_EXCL: two processes starting at once do not overwrite each other's key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(key)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(f"the credential key file {path} is readable by others: chmod 600 it")
    try:
        key = path.read_bytes().strip()
        Fernet(key)
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"the credential key file {path} cannot be used ({type(exc).__name__})") from None
    return CredentialKey(key, str(path))


def encrypt(values: Mapping[str, str], key: bytes) -> str:
    """The settings as one Fernet token (text)."""
    return Fernet(key).encrypt(json.dumps(dict(values), sort_keys=True).encode()).decode()


def decrypt(token: str, key: bytes) -> dict[str, str]:
    """The settings of a Fernet token; `CredentialsError` when the key does not open it."""
    try:
        return json.loads(Fernet(key).decrypt(token.encode()))
    except InvalidToken:
        raise CredentialsError(
            "stored credentials cannot be decrypted with this key (the key changed?): enter them again, or restore the key"
        ) from None


def hints(values: Mapping[str, str]) -> dict[str, str]:
    """What may be shown of stored settings: identifiers in clear, secrets masked."""
    return {k: (mask(v) if k in SECRET_KEYS or k.endswith(("_secret", "_token", "_verifier")) else str(v))
            for k, v in sorted(values.items()) if v not in (None, "")}


class CredentialStore:
    """Encrypted credentials per workspace and platform, in the app's database."""

    def __init__(self, engine: Engine, key: CredentialKey):
        self.engine = engine
        self._key = key.key
        self.key_source = key.source

    def __repr__(self) -> str:
        return f"CredentialStore(key_source={self.key_source!r})"

    @guarded(Role.ADMIN, "connection.save", target="")
    def save(self, workspace_id: str, platform: str, values: Mapping[str, str], *, actor: str = "") -> None:
        """Store (replace) a platform's settings; empty values are left out."""
        clean = {str(k): str(v).strip() for k, v in values.items() if v is not None and str(v).strip() != ""}
        if not clean:
            raise CredentialsError("nothing to store: every field is empty")
        token = encrypt(clean, self._key)
        audit_target(platform.split(":")[0])  # never a pending sign-in's state
        with transaction(self.engine, workspace_id) as s:
            row = s.scalars(select(StoredCredential).where(StoredCredential.platform == platform)).one_or_none()
            if row is None:
                s.add(StoredCredential(platform=platform, ciphertext=token, hints=hints(clean), updated_by=actor))
            else:
                row.ciphertext, row.hints, row.updated_by, row.updated_at = token, hints(clean), actor, utcnow()

    def load(self, workspace_id: str, platform: str) -> dict[str, str] | None:
        """A platform's stored settings, decrypted; None when nothing is stored."""
        with transaction(self.engine, workspace_id) as s:
            token = s.scalar(select(StoredCredential.ciphertext).where(StoredCredential.platform == platform))
        return None if token is None else decrypt(token, self._key)

    def describe(self, workspace_id: str, platform: str) -> dict | None:
        """(hints, updated_at, updated_by) of a platform's stored settings without decrypting them; None if none."""
        with transaction(self.engine, workspace_id) as s:
            row = s.scalars(select(StoredCredential).where(StoredCredential.platform == platform)).one_or_none()
            return None if row is None else {"hints": dict(row.hints), "updated_at": row.updated_at, "updated_by": row.updated_by}

    @guarded(Role.ADMIN, "connection.delete", target="")
    def delete(self, workspace_id: str, platform: str, *, actor=None) -> bool:
        """Remove a platform's stored settings; True if there were any."""
        audit_target(platform.split(":")[0])
        with transaction(self.engine, workspace_id) as s:
            n = s.execute(delete(StoredCredential).where(StoredCredential.workspace_id == workspace_id,
                                                         StoredCredential.platform == platform)).rowcount
        return bool(n)

    @guarded(Role.ADMIN, "connection.delete", target="{prefix}")
    def delete_prefix(self, workspace_id: str, prefix: str, *, actor=None) -> int:
        """Remove every stored row whose platform starts with ``prefix`` (e.g. pending sign-ins); how many."""
        with transaction(self.engine, workspace_id) as s:
            return int(s.execute(delete(StoredCredential).where(StoredCredential.workspace_id == workspace_id,
                                                                StoredCredential.platform.startswith(prefix))).rowcount or 0)

    def flat(self, workspace_id: str) -> dict[str, str]:
        """Every stored setting of the workspace's platforms as one mapping of flat keys
        (``meta_access_token``, ``google_customer_id``, ...), the form `discover` reads."""
        out: dict[str, str] = {}
        for platform in ("meta", "google"):
            try:
                out.update(self.load(workspace_id, platform) or {})
            except CredentialsError:
                continue  # undecryptable rows are reported by the page, not used
        return out
