"""Keep secrets out of output: a str that hides itself in reprs, and a masker for text."""

from __future__ import annotations

import re
from typing import Iterable

MASK = "***"
# Greedy up to the last "@" of the URL: a password with "/" or "@" in it is masked whole
# (over-masking a malformed URL is fine; showing part of a password is not).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<password>\S*)@")


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


def url_for_message(url: str) -> str:
    """A URL as it may appear in an error: its password masked, or all of it when it does not parse."""
    text = str(url)
    if not re.match(r"^[a-zA-Z][\w+.-]*://", text) or ("@" in text and mask_url(text) == text):
        return MASK
    return mask_url(text)


def mask_text(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every known secret, and URL passwords, in ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), MASK)
    return mask_url(text)


class MaskedUrl(str):
    """A URL whose ``str()`` and repr hide its password.

    The characters are the real URL: kombu's ``Connection(url)`` and ``urllib.parse`` read them as they
    are. Whatever turns it into text for people — a repr in a traceback or ``--showlocals``, ``str()``,
    ``%s`` and f-strings in logs and ``pytest --debug`` — shows ``***``. :meth:`unmasked` gives the
    plain string.
    """

    __slots__ = ()

    def __new__(cls, value: str = "") -> "MaskedUrl":
        # str(value) of another MaskedUrl would be the masked text: take its characters instead.
        return super().__new__(cls, value.unmasked() if isinstance(value, MaskedUrl) else value)

    def unmasked(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return mask_url(str.__str__(self))

    def __repr__(self) -> str:
        return repr(mask_url(str.__str__(self)))
