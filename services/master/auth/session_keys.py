"""The keys the masters seal workers' browser sessions with (fleet: sessions that move).

A session (Playwright's storage state: the cookies of a logged-in account) is kept by the
store only sealed: AES-256-GCM under the newest key of the ring, the account's id bound in
as associated data (a sealed session copied to another account does not open), the key's
id in front so that older keys still open what they sealed.

The ring is a file of lines `<key id> <base64 of 32 random bytes>`, newest first, made
by `imsync session-key create --file F` (which puts the new key first). To rotate: create
a new key, restart the masters (each one reads the file at start), and remove the old
line once every account's session was uploaded again (a worker uploads after each login
and whenever the cookies change) or forgotten; a session sealed by a removed key opens
no longer: its account counts as logged out and logs in again.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.private_files import write_private

_MAGIC = b"imsync-session-1\n"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


class SessionKeyError(ValueError):
    pass


@dataclass(frozen=True)
class SessionKeys:
    # (key id, key), newest first.
    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def load(cls, path: Path) -> SessionKeys:
        try:
            text = path.read_text()
        except OSError as error:
            raise SessionKeyError(f"{path}: {error}") from None
        keys = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            try:
                key_id, key = parts[0], base64.b64decode(parts[1], validate=True)
            except (IndexError, ValueError):
                key_id, key = "", b""
            if len(parts) != 2 or not _KEY_ID.fullmatch(key_id) or len(key) != 32:
                raise SessionKeyError(f"{path}:{number}: expected '<key id> <base64 of 32 bytes>'")
            keys.append((key_id, key))
        if not keys:
            raise SessionKeyError(f"{path}: no key")
        return cls(tuple(keys))

    def seal(self, account_id: str, state: bytes) -> bytes:
        key_id, key = self.keys[0]
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, state, account_id.encode())
        return _MAGIC + key_id.encode() + b"\n" + nonce + sealed

    def open(self, account_id: str, sealed: bytes) -> bytes | None:
        """The session, or None when no key of the ring opens it (damaged, another
        account's, or sealed by a key removed since)."""
        if not sealed.startswith(_MAGIC):
            return None
        key_id, _, rest = sealed[len(_MAGIC) :].partition(b"\n")
        key = dict(self.keys).get(key_id.decode(errors="replace"))
        if key is None or len(rest) < 12 + 16:
            return None
        try:
            return AESGCM(key).decrypt(rest[:12], rest[12:], account_id.encode())
        except Exception:
            return None

    def is_current(self, sealed: bytes) -> bool:
        """Whether the newest key sealed it (else the master seals it again on its next use)."""
        return sealed.startswith(_MAGIC + self.keys[0][0].encode() + b"\n")


def create_session_key(path: Path, key_id: str = "") -> str:
    """Puts a new key first in the ring file (made, mode 0600, when missing); returns its id."""
    key_id = key_id or f"k{secrets.token_hex(4)}"
    if not _KEY_ID.fullmatch(key_id):
        raise SessionKeyError("a key id is 1 to 32 letters, digits, '.', '_' or '-'")
    old = path.read_text() if path.exists() else ""
    if any(line.split()[:1] == [key_id] for line in old.splitlines()):
        raise SessionKeyError(f"{path} has a key {key_id!r} already")
    line = f"{key_id} {base64.b64encode(secrets.token_bytes(32)).decode()}\n"
    write_private(path, (line + old).encode())
    return key_id
