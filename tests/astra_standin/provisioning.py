"""Give a Cassandra node the database layout an Astra token sees.

On Astra the keyspace is created in the web console, not through CQL, and the
application token may work inside it but may not create keyspaces. Here the
superuser plays the console: it creates the keyspace and the role ``token``
(password = the token) with every permission on that keyspace and nothing more.
"""

from __future__ import annotations

import re

from cassandra.cluster import Session

from .tokens import TOKEN_USERNAME

# Astra keyspace names: a letter, then letters, digits, underscores; 48 chars max.
_KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
# What GRANT ALL PERMISSIONS ON KEYSPACE gives (Cassandra 5 adds UNMASK, SELECT_MASKED).
_KEYSPACE_PERMISSIONS = frozenset({"CREATE", "ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE"})
# The password is spliced into CQL; only characters that cannot end a literal.
_SAFE_PASSWORD_RE = re.compile(r"^[A-Za-z0-9:_\-.]+$")


def validate_keyspace(keyspace: str) -> str:
    """Return ``keyspace`` if it is a valid Astra keyspace name, else raise ValueError."""
    if not _KEYSPACE_RE.match(keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r}")
    return keyspace


def provision_keyspace_and_token(session: Session, keyspace: str, token: str, role: str = TOKEN_USERNAME) -> None:
    """Create ``keyspace`` and ``role`` (password ``token``) and grant the role the keyspace.

    Idempotent: on a node that already has the role its password is reset to
    ``token`` (so the latest stand-in's token is the valid one).
    """
    validate_keyspace(keyspace)
    if not _SAFE_PASSWORD_RE.match(token):
        raise ValueError("the token contains characters that cannot be used as a CQL literal")
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
        "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    # Quoted: role names are identifiers, and quoting keeps `token` from ever
    # being read as the TOKEN keyword.
    session.execute(f"CREATE ROLE IF NOT EXISTS \"{role}\" WITH PASSWORD = '{token}' AND LOGIN = true")
    session.execute(f"ALTER ROLE \"{role}\" WITH PASSWORD = '{token}' AND LOGIN = true AND SUPERUSER = false")
    # Granting again works but makes the node send a warning the driver logs;
    # a second stand-in on the same node would print it every time.
    granted = session.execute(
        "SELECT permissions FROM system_auth.role_permissions WHERE role = %s AND resource = %s",
        (role, f"data/{keyspace.lower()}"),
    ).one()
    if granted is None or not _KEYSPACE_PERMISSIONS <= set(granted.permissions or ()):
        session.execute(f"GRANT ALL PERMISSIONS ON KEYSPACE {keyspace} TO \"{role}\"")


# What each kind of Astra role may do in the keyspace: "all" (e.g. Database Administrator) creates and
# drops tables; "read-write" (e.g. a read/write user role) only reads and writes rows.
ROLE_PERMISSIONS = {"all": ("ALL PERMISSIONS",), "read-write": ("SELECT", "MODIFY")}


def provision_client(session: Session, keyspace: str, client_id: str, secret: str, rights: str = "all") -> None:
    """A login by client id and client secret, as Astra's older credentials: role ``client_id``
    (password ``secret``) with ``rights`` on ``keyspace`` only."""
    validate_keyspace(keyspace)
    if not (_SAFE_PASSWORD_RE.match(client_id) and _SAFE_PASSWORD_RE.match(secret)):
        raise ValueError("the client id or secret contains characters that cannot be used as a CQL literal")
    session.execute(f"CREATE ROLE IF NOT EXISTS \"{client_id}\" WITH PASSWORD = '{secret}' AND LOGIN = true")
    for permission in ROLE_PERMISSIONS[rights]:
        session.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO \"{client_id}\"")
