"""Container ids for subdomain mode: a visitor's id is a DNS label of their host, and browsers
lower-case hosts, so an id there is [a-z0-9] only. Fewer letters mean more of them for the
same entropy: `subdomain_id_length` lengthens --user-length so that nothing is lost.
"""

from __future__ import annotations

import math
import secrets
import string

from tmpnb.ids import ID_ALPHABET

LOWER_ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_LABEL = 63


def subdomain_id_length(user_length: int) -> int:
    """Characters of [a-z0-9] holding at least the entropy of `user_length` of [a-zA-Z0-9]
    (12 → 14: 71.5 → 72.4 bits), at most a DNS label (63)."""
    bits = user_length * math.log2(len(ID_ALPHABET))
    return min(MAX_LABEL, math.ceil(bits / math.log2(len(LOWER_ID_ALPHABET)) - 1e-9))


def new_lower_container_id(length: int) -> str:
    """A fresh id of `length` characters of [a-z0-9], from the operating system's CSPRNG."""
    if not 1 <= length <= MAX_LABEL:
        raise ValueError(f"a subdomain id has 1 to {MAX_LABEL} characters, not {length}")
    return "".join(secrets.choice(LOWER_ID_ALPHABET) for _ in range(length))
