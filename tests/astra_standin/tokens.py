"""Astra application tokens: generating look-alikes and keeping them out of logs.

An Astra token reads ``AstraCS:<24 letters>:<64 hex digits>``; drivers send it
as the password of the user ``token``. The stand-in only needs the shape, so
that code which parses or validates tokens sees realistic values.
"""

from __future__ import annotations

import re
import secrets
import string

TOKEN_USERNAME = "token"
_PREFIX = "AstraCS:"
_TOKEN_RE = re.compile(r"^AstraCS:[A-Za-z]{24}:[0-9a-f]{64}$")


def generate_astra_token() -> str:
    """Return a fresh random token in Astra's format."""
    client_id = "".join(secrets.choice(string.ascii_letters) for _ in range(24))
    return f"{_PREFIX}{client_id}:{secrets.token_hex(32)}"


def is_astra_token(value: str) -> bool:
    """True if ``value`` has the shape of an Astra token."""
    return bool(_TOKEN_RE.match(value))


def mask_token(token: str) -> str:
    """A loggable form of a token: the prefix only, never the secret parts."""
    return f"{_PREFIX}***" if token.startswith(_PREFIX) else "***"
