"""Notebook server tokens derived from the container id under an instance secret.

A token is never stored where others can read it: not in a Docker label (every `docker
inspect`, every Docker event and event shipper shows labels), not in the container's
environment. tmpnb derives it, `HMAC-SHA256(secret, id)`, whenever it needs it, so after a
restart it knows the token of every container it adopts. The secret lives in one file of
tmpnb's own (mode 0600, made at first start), by default `<socket_root>/<instance>.secret`,
a sibling of the containers' socket directories and never inside one (those are writable by
the container user).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

SECRET_BYTES = 32
TOKEN_HEX_CHARS = 48  # as long as the random tokens before (tmpnb.ids.TOKEN_BYTES)
_PURPOSE = b"tmpnb notebook server token\0"  # a secret used for one thing only


class InsecureSecretFile(Exception):
    """The secret file can be read or written by someone other than its owner."""


def secret_path(socket_root: str, instance: str) -> str:
    """The default place of an instance's secret (--secret-file)."""
    return os.path.join(socket_root, f"{instance}.secret")


def load_or_create_secret(path: str) -> bytes:
    """The secret in `path`, made (0600, random) if the file does not exist yet.

    A file that group or others may read or write is refused: whoever reads it can compute
    every visitor's token.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_secret(path)
    try:
        os.fchmod(fd, 0o600)  # exact, whatever the umask
        os.write(fd, secrets.token_hex(SECRET_BYTES).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return _read_secret(path)


def _read_secret(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise InsecureSecretFile(
                f"{path} must be a regular file readable by its owner only (chmod 600), "
                f"not mode {stat.S_IMODE(info.st_mode):o}"
            )
        if info.st_uid != os.geteuid():
            raise InsecureSecretFile(f"{path} belongs to uid {info.st_uid}, not to tmpnb's uid {os.geteuid()}")
        secret = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if len(secret) < 32:
        raise InsecureSecretFile(f"{path} holds {len(secret)} bytes; a secret needs at least 32")
    return secret


class ServerTokens:
    """The token of each notebook server of one instance."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def ephemeral(cls) -> ServerTokens:
        """Tokens under a secret only this process knows (tests, no restarts to survive)."""
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def from_file(cls, path: str) -> ServerTokens:
        return cls(load_or_create_secret(path))

    def key_for(self, purpose: str) -> bytes:
        """A key of its own for another secret of the instance (e.g. the reload cookies'
        signatures): derived, so it survives restarts as the tokens do, and tells nothing of them."""
        return hmac.new(self._secret, b"tmpnb key: " + purpose.encode("utf-8"), hashlib.sha256).digest()

    def token_for(self, container_id: str) -> str:
        """The token of the server of `container_id` (hex, TOKEN_HEX_CHARS long)."""
        digest = hmac.new(self._secret, _PURPOSE + container_id.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:TOKEN_HEX_CHARS]
