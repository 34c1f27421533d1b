"""A RabbitMQ container's virtual hosts: made for a run's workers, deleted at its end (also in a kept
container, which outlives the run), through RabbitMQ's management HTTP API when the container has it, else
``rabbitmqctl`` in the container.

A run on a kept container makes one vhost per xdist worker and deletes them at its end. Through
``rabbitmqctl`` each call boots an Erlang VM (~0.6 s, plus ~0.2 s of ``exec``); through the API a
vhost with its permissions is one request (~15 ms), and so is its deletion. Only the container's
default ``guest`` user is used, as for the AMQP URL; every API failure raises :class:`AdminApiError`, and
the caller falls back to ``rabbitmqctl``.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from pytest_celery_astra.containers.services import RunningService, exec_in_container
from pytest_celery_astra.naming import vhost_name

logger = logging.getLogger(__name__)

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


def create_vhosts(service: RunningService, vhosts: list[str]) -> None:
    """Through the management API when the container has it (kept containers); else, or when it fails,
    ``rabbitmqctl``. Each ``rabbitmqctl`` call boots an Erlang VM (~0.6 s here), so the vhosts and the guest's
    permissions come in one ``import_definitions`` (RabbitMQ 3.8.2+); else ``add_vhost`` then
    ``set_permissions`` per vhost."""
    if service.admin_port:
        try:
            for vhost in vhosts:
                define_vhost(service.host, service.admin_port, vhost)
            return
        except AdminApiError as error:
            logger.info("pytest-celery-astra: the management API did not create vhosts %s (%s); using "
                        "rabbitmqctl", ", ".join(vhosts), error)
    definitions = json.dumps({
        "vhosts": [{"name": vhost} for vhost in vhosts],
        "permissions": [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
                        for vhost in vhosts]})
    path = f"/tmp/celery-astra-{vhosts[0]}.json"
    one_call = f"printf '%s' '{definitions}' > {path} && rabbitmqctl -q import_definitions {path} >/dev/null"
    two_calls = " && ".join(
        f"(rabbitmqctl -q add_vhost {vhost} >/dev/null 2>&1 || rabbitmqctl -q list_vhosts | grep -qx {vhost})"
        f" && rabbitmqctl -q set_permissions -p {vhost} guest '.*' '.*' '.*'" for vhost in vhosts)
    script = f"({one_call}) || ({two_calls}); status=$?; rm -f {path}; exit $status"
    exec_in_container(service.container_id, ["sh", "-c", script])


def delete_run_vhosts(container_id: str, run_id: str, host: str | None = None, admin_port: int | None = None) -> None:
    """Delete one run's virtual hosts (one per xdist worker) from a kept RabbitMQ container: a run
    removes what it created, also in a container that outlives it.

    Through the management API at ``host:admin_port`` when given (one request per vhost). Else, or when it
    fails, one ``rabbitmqctl eval`` lists and deletes them in a single Erlang VM; where its internal calls do
    not exist (another RabbitMQ version), the public commands do it, one VM per vhost."""
    prefix = vhost_name("", run_id).rstrip("_") + "_"
    if host and admin_port:
        try:
            delete_vhosts(host, admin_port, prefix)
            return
        except AdminApiError as error:
            logger.info("pytest-celery-astra: the management API did not delete run %s's vhosts (%s); "
                        "using rabbitmqctl", run_id, error)
    one_call = ("rabbitmqctl -q eval '"
                f"P = <<\"{prefix}\">>, [ok = rabbit_vhost:delete(V, <<\"pytest-celery-astra\">>) "
                "|| V <- rabbit_vhost:list_names(), binary:longest_common_prefix([V, P]) =:= byte_size(P)].' "
                ">/dev/null 2>&1")
    # The names are listed first: a `| while read` loop would lose lines to rabbitmqctl reading stdin.
    loop = (f"for vhost in $(rabbitmqctl -q list_vhosts | grep '^{prefix}'); do "
            f"rabbitmqctl -q delete_vhost \"$vhost\" </dev/null || exit 1; done")
    exec_in_container(container_id, ["sh", "-c", f"{one_call} || ({loop})"])
