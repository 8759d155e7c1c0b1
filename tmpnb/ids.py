"""Container ids and server tokens, from the operating system's CSPRNG.

A container id is also the visitor's URL path (/user/<id>/): whoever guesses one gets that
visitor's notebook when tokens are off, so ids come from `secrets`, never from `random`.
"""

from __future__ import annotations

import secrets
import string

ID_ALPHABET = string.ascii_letters + string.digits
TOKEN_BYTES = 24  # 48 hex characters


def new_container_id(length: int = 12) -> str:
    """A fresh id of `length` characters of [a-zA-Z0-9] (--user-length)."""
    if length < 1:
        raise ValueError(f"an id needs at least one character, not {length}")
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_token() -> str:
    """A fresh token for one notebook server, as hex."""
    return secrets.token_hex(TOKEN_BYTES)
