"""RabbitMQ's management HTTP API, for the vhosts of a kept (reused) RabbitMQ container.

A run on a kept container makes one vhost per xdist worker and deletes them at its end. Through
``rabbitmqctl`` each call boots an Erlang VM (~0.6 s, plus ~0.2 s of ``exec``); through this API a
vhost with its permissions is one request (~15 ms), and so is its deletion. Only the container's
default ``guest`` user is used, as for the AMQP URL; every failure raises :class:`AdminApiError`, and
the caller falls back to ``rabbitmqctl``.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_SECONDS = 10.0
_AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


class AdminApiError(RuntimeError):
    """The management API did not do what was asked (not enabled, not up yet, refused)."""


def define_vhost(host: str, port: int, vhost: str) -> None:
    """Create ``vhost`` with every permission for ``guest``, in one request (``POST /api/definitions``)."""
    _request(host, port, "POST", "/api/definitions", {
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]})


def delete_vhosts(host: str, port: int, prefix: str) -> list[str]:
    """Delete every vhost whose name starts with ``prefix`` (its queues and messages go with it)."""
    names = [entry["name"] for entry in _request(host, port, "GET", "/api/vhosts?columns=name") or []]
    deleted = [name for name in names if name.startswith(prefix)]
    for name in deleted:
        _request(host, port, "DELETE", "/api/vhosts/" + urllib.parse.quote(name, safe=""), allow=(404,))
    return deleted


def _request(host: str, port: int, method: str, path: str, body: object = None, allow: tuple[int, ...] = ()):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method,
                                     headers={"Authorization": _AUTH, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            payload = response.read()
    except urllib.error.HTTPError as error:
        if error.code in allow:
            return None
        raise AdminApiError(f"{method} {path.split('?')[0]} answered HTTP {error.code}") from None
    except (OSError, ValueError) as error:  # refused, reset, timed out, bad answer
        raise AdminApiError(f"{method} {path.split('?')[0]} failed: {type(error).__name__}: {error}") from None
    return json.loads(payload) if payload.strip() else None
