"""Keep secrets out of output: a str that hides itself in reprs, and a masker for text."""

from __future__ import annotations

import re
from typing import Iterable

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")


class Secret(str):
    """A string whose repr is masked.

    ``str(secret)`` and formatting with ``%s`` still give the real value, because
    drivers need it (cassandra-driver's PlainTextAuthProvider formats the password
    into its SASL payload); reprs, which end up in tracebacks, --showlocals and
    logs, show ``'***'``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def mask_url(url: str) -> str:
    """``amqp://user:***@host//`` for ``amqp://user:secret@host//``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(url))


def mask_text(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every known secret, and URL passwords, in ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), MASK)
    return mask_url(text)
