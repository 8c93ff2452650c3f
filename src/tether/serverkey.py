"""The server key: the one secret from which every agent's dial secret is derived.

A dial secret is ``HMAC-SHA256(server key, "tether-dial-v1:" + agent id)``, so the database
stores no dial secret at all: a copy of the database alone does not let anyone dial an agent.
Replicas sharing one PostgreSQL must share the key (``TETHER_SERVER_KEY`` or a common
``TETHER_SERVER_KEY_FILE``); a fingerprint in the database refuses a replica with another key
instead of letting its dials fail one by one.

The key comes from, in order: ``Settings.server_key`` (environment), the file
``Settings.server_key_file``, or a new random key written to ``<data_dir>/server.key`` (0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from tether.errors import InvalidInput
from tether.private import private_dir, private_sqlite
from tether.settings import Settings

KEY_BYTES = 32
_DIAL_CONTEXT = b"tether-dial-v1:"
_FINGERPRINT_CONTEXT = b"tether-key-fingerprint-v1"


class ServerKey:
    """Derives per-agent dial secrets; never exposes the key itself (not even in ``repr``)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise InvalidInput("the server key must be at least 16 bytes", field="server_key")
        self._key = key

    def __repr__(self) -> str:
        return "ServerKey(<hidden>)"

    def dial_secret(self, agent_id: uuid.UUID) -> str:
        """The dial secret of one agent row (stable: any replica with the key derives it)."""
        digest = hmac.new(self._key, _DIAL_CONTEXT + agent_id.bytes, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def fingerprint(self) -> str:
        """A one-way identifier of the key, safe to store in the database."""
        return hmac.new(self._key, _FINGERPRINT_CONTEXT, hashlib.sha256).hexdigest()


def _decode(text: str) -> bytes:
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise InvalidInput(
            "the server key must be URL-safe base64 (as written by tether)", field="server_key"
        ) from None


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the first byte (never world-readable, not even
    briefly); fails if it exists, so two starting processes cannot overwrite each other."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def load_server_key(*, key_text: str | None, key_file: Path) -> ServerKey:
    """The configured key, or the key in ``key_file`` (created, 0600, if missing)."""
    if key_text:
        return ServerKey(_decode(key_text))
    try:
        return ServerKey(_decode(key_file.read_text()))
    except FileNotFoundError:
        pass
    try:
        write_private(key_file, _encode(secrets.token_bytes(KEY_BYTES)))
    except FileExistsError:
        pass  # another process created it first: use that one
    os.chmod(key_file, 0o600)
    return ServerKey(_decode(key_file.read_text()))


def open_server_key(settings: Settings) -> ServerKey:
    """Prepare the data dir (0700; a SQLite database and its WAL/SHM 0600) and return the
    server key (from the settings, else its file, created 0600 on first start)."""
    private_dir(settings.data_dir)
    url = make_url(settings.database_url())
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        private_sqlite(Path(url.database))
    secret = settings.server_key.get_secret_value() if settings.server_key else None
    return load_server_key(key_text=secret, key_file=settings.server_key_path())
