"""Each image the tests use starts through testcontainers and does real work.

On machines without a registry these are the images scripts/build-images made
(CELERY_ASTRA_*_IMAGE); with Docker, the official ones.
"""

import time
import uuid

import pytest
from testcontainers.core.container import DockerContainer

from pytest_celery_astra.containers.services import cassandra_spec, rabbitmq_spec, redis_spec, wait_until_ready
from tests.conftest import image

pytestmark = pytest.mark.usefixtures("container_engine")


def started(spec):
    """Start ``spec`` with plain testcontainers and wait for its service; yield host, port."""
    container = DockerContainer(spec.image).with_exposed_ports(spec.port)
    for name, value in spec.env:
        container.with_env(name, value)
    container.start()
    try:
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(spec.port))
        began = time.monotonic()
        wait_until_ready(spec, host, port, timeout=120)
        print(f"{spec.name} ready {time.monotonic() - began:.1f} s after start")
        yield host, port
    finally:
        container.stop()


@pytest.fixture(scope="module")
def rabbitmq():
    yield from started(rabbitmq_spec(image("rabbitmq")))


@pytest.fixture(scope="module")
def redis():
    yield from started(redis_spec(image("redis")))


@pytest.fixture(scope="module")
def cassandra():
    yield from started(cassandra_spec(image("cassandra")))


def publish_and_consume(url: str) -> str:
    from kombu import Connection, Exchange, Queue

    queue = Queue(f"smoke-{uuid.uuid4().hex[:8]}", Exchange("smoke", type="direct"), routing_key="smoke")
    with Connection(url, connect_timeout=5) as connection:
        connection.Producer().publish({"hello": "world"}, exchange=queue.exchange, routing_key="smoke",
                                      declare=[queue], retry=True)
        received = []
        with connection.Consumer(queue, callbacks=[lambda body, message: (received.append(body), message.ack())]):
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    pass
    return received[0]["hello"]


def test_rabbitmq_publish_and_consume(rabbitmq):
    host, port = rabbitmq
    assert publish_and_consume(f"amqp://guest:guest@{host}:{port}//") == "world"


def test_redis_publish_and_consume(redis):
    host, port = redis
    assert publish_and_consume(f"redis://{host}:{port}/0") == "world"


def test_cassandra_cql_round_trip(cassandra):
    from pytest_celery_astra.cassandra.target import CassandraTarget

    host, port = cassandra
    cluster = CassandraTarget(hosts=(host,), port=port, protocol_version=5).cluster()
    try:
        session = cluster.connect()
        assert session.execute("SELECT release_version FROM system.local").one().release_version.startswith(
            ("5.0", "4."))
        session.execute("CREATE KEYSPACE smoke WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        session.execute("CREATE TABLE smoke.items (id int PRIMARY KEY, name text)")
        session.execute("INSERT INTO smoke.items (id, name) VALUES (1, 'one')")
        assert session.execute("SELECT name FROM smoke.items WHERE id = 1").one().name == "one"
        session.execute("TRUNCATE smoke.items")
        assert session.execute("SELECT * FROM smoke.items").one() is None
    finally:
        cluster.shutdown()


def test_rabbitmq_image_keeps_only_the_plugins_the_tests_use():
    """At boot RabbitMQ loads every module of every RabbitMQ application on its code path (~2 s for the
    ~50 plugins Debian bundles): the image keeps the broker's own and the management API's (kept containers)."""
    import docker

    client = docker.from_env()
    try:
        listing = client.containers.run(image("rabbitmq"), entrypoint=["sh", "-c"],
                                        command=["ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"], remove=True)
    finally:
        client.close()
    apps = {name.rsplit("-", 1)[0] for name in listing.decode().split() if name.startswith("rabbit")}
    assert apps == {"rabbit", "rabbit_common", "rabbitmq_prelaunch", "rabbitmq_management",
                    "rabbitmq_management_agent", "rabbitmq_web_dispatch"}
