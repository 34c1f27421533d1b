"""Runs that share services: two concurrent `-n 2` runs on one Cassandra and one Redis started outside the
plugin (as a team's shared test cluster), twice in a row; the same with container reuse; -n 8 on
every broker kind. Each run keeps to its own keyspaces and queues; a foreign keyspace with data survives."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.plugin.test_plugin import containers_of_run, run_id_of  # noqa: F401 - run_id_of used below

pytestmark = pytest.mark.usefixtures("container_engine")

APP = '''
import os

from celery import Celery

app = Celery("myapp")


@app.task(name="myapp.where")
def where(tag):
    return [tag, os.environ.get("PYTEST_XDIST_WORKER", "master")]
'''
TESTS = '''
import os

import pytest
from myapp import where

RUN = os.environ["RUN_TAG"]


@pytest.mark.parametrize("n", range(12))
def test_own_tasks_and_rows(n, celery_astra_worker, celery_astra_app, celery_astra_cassandra):
    me = os.environ.get("PYTEST_XDIST_WORKER", "master")
    for i in range(5):
        assert where.delay(f"{RUN}-{n}-{i}").get(timeout=30) == [f"{RUN}-{n}-{i}", me]
    rows = celery_astra_cassandra.execute(f"SELECT COUNT(*) FROM {celery_astra_app.conf.cassandra_table}").one()[0]
    assert rows == 5   # emptied after the previous test, and nobody else's rows
'''


def start(project, tag, *args):
    env = {**os.environ, "RUN_TAG": tag}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=project,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@pytest.fixture
def project(pytester):
    pytester.makepyfile(myapp=APP, test_shared=TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    return pytester.path


@pytest.fixture(scope="module")
def shared_cluster():
    """A Cassandra node (with login) and a Redis, started outside the plugin, with foreign data in Cassandra."""
    from testcontainers.core.container import DockerContainer

    from tests.astra_standin import cassandra_container, connect_superuser
    from tests.conftest import image

    redis = DockerContainer(image("redis")).with_exposed_ports(6379)
    redis.start()
    try:
        with cassandra_container() as node:
            cluster, session = connect_superuser(node.host, node.port)
            session.execute("CREATE KEYSPACE team_data WITH replication = "
                            "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            session.execute("CREATE TABLE team_data.orders (id int PRIMARY KEY)")
            session.execute("INSERT INTO team_data.orders (id) VALUES (7)")
            redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
            try:
                yield node, session, redis_url
            finally:
                cluster.shutdown()
    finally:
        redis.stop()


def test_two_concurrent_runs_on_one_cassandra_and_one_broker(project, shared_cluster, monkeypatch):
    node, session, redis_url = shared_cluster
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_PASSWORD", "cassandra")
    args = ["-n", "2", "--celery-astra-broker-url", redis_url, f"--celery-astra-cassandra-hosts={node.host}",
            f"--celery-astra-cassandra-port={node.port}", "--celery-astra-cassandra-username=cassandra"]
    for attempt in range(2):   # the second pair starts after the first dropped its keyspaces and queues
        first, second = start(project, f"a{attempt}", *args), start(project, f"b{attempt}", *args)
        (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
        assert code_a == 0, out_a
        assert code_b == 0, out_b
        assert "12 passed" in out_a and "12 passed" in out_b
    keyspaces = {row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    assert not [name for name in keyspaces if name.startswith("celery_astra")]   # each run dropped its own
    assert session.execute("SELECT id FROM team_data.orders").one().id == 7


def test_drop_stale_removes_old_runs_of_other_hosts_and_nothing_else(project, shared_cluster, monkeypatch):
    """Dead runs on this host are reaped anyway; another host's can only be judged by age, on request."""
    import datetime
    import socket

    from pytest_celery_astra.cassandra.marks import OWNER_TABLE
    from pytest_celery_astra.host import Owner

    node, session, _ = shared_cluster
    now = datetime.datetime.now(datetime.timezone.utc)
    me = Owner.this_process()
    marked = {   # keyspace: (host, pid, started, created)
        "celery_astra_oldrun_gw0": ("ci-runner-7", 4242, "1", now - datetime.timedelta(hours=3)),
        "celery_astra_newrun_gw0": ("ci-runner-7", 4242, "1", now - datetime.timedelta(minutes=5)),
        "celery_astra_liverun_gw0": (socket.gethostname(), me.pid, me.started, now - datetime.timedelta(hours=3)),
    }
    for keyspace, (host, pid, started, created) in marked.items():
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        mark = (f"pytest-celery-astra run={keyspace.split('_')[2]} worker=gw0 "
                f"created={created:%Y-%m-%dT%H:%M:%SZ} host={host} pid={pid} started={started}")
        session.execute(f"CREATE TABLE {keyspace}.{OWNER_TABLE} (run_id text PRIMARY KEY) WITH comment = '{mark}'")
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_PASSWORD", "cassandra")
    args = ["--celery-astra-broker", "memory", f"--celery-astra-cassandra-hosts={node.host}",
            f"--celery-astra-cassandra-port={node.port}", "--celery-astra-cassandra-username=cassandra",
            "-k", "test_own_tasks_and_rows and 0"]

    def keyspaces():
        return {row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}

    try:
        code, output = finish(start(project, "plain", *args))
        assert code == 0, output
        assert set(marked) <= keyspaces(), output          # without the option another host's runs stay
        code, output = finish(start(project, "stale", *args, "--celery-astra-drop-stale"))
        assert code == 0, output
        assert "keyspace celery_astra_oldrun_gw0 (created " in output, output
        left = keyspaces()
        assert "celery_astra_oldrun_gw0" not in left
        assert {"celery_astra_newrun_gw0", "celery_astra_liverun_gw0", "team_data"} <= left, output
        assert session.execute("SELECT id FROM team_data.orders").one().id == 7
    finally:
        for keyspace in marked:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


KEPT_TEST = '''
import os
import time

from myapp import where


def test_kept(celery_astra_worker, celery_astra_database):
    db = celery_astra_database
    rows = db.session.execute(f"SELECT COUNT(*) FROM {db.result_table}").one()[0]
    if db.adopted:   # the last run's extra table, kept and emptied
        rows += db.session.execute("SELECT COUNT(*) FROM extra").one()[0]
    owner = db.session.execute("SELECT comment FROM system_schema.tables WHERE keyspace_name = %s "
                               "AND table_name = 'celery_astra_owner'", (db.keyspace,)).one()[0]
    print(f"\\nKEPT keyspace={db.keyspace} adopted={db.adopted} rows={rows} owner_run={owner.split()[1]}")
    assert where.delay(os.environ["RUN_TAG"]).get(timeout=30)[0] == os.environ["RUN_TAG"]
    db.create_table("extra", cql="CREATE TABLE extra (id int PRIMARY KEY)")   # as a conftest would, each run
    db.session.execute("INSERT INTO extra (id) VALUES (1)")
    if os.environ.get("HOLD_FILE"):
        where.delay("left by a killed run").get(timeout=30)
        open(os.environ["HOLD_FILE"], "w").close()
        time.sleep(300)
'''


def test_kept_keyspaces_on_a_cluster_need_no_schema_change_on_a_repeat_run(project, shared_cluster, monkeypatch,
                                                                              tmp_path):
    """keep_keyspaces: the first run makes the lease table and a kept keyspace; the next one takes that keyspace,
    emptied, without any schema change (the node's schema version does not move); a held one goes to nobody
    else, and a killed holder's claim is one that runs out."""
    node, session, _ = shared_cluster
    (project / "test_kept.py").write_text(KEPT_TEST)
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_PASSWORD", "cassandra")
    args = ["-s", "test_kept.py", "--celery-astra-broker", "memory", f"--celery-astra-cassandra-hosts={node.host}",
            f"--celery-astra-cassandra-port={node.port}", "--celery-astra-cassandra-username=cassandra",
            "--celery-astra-keyspace=kept_test", "--celery-astra-keep-keyspaces=true"]

    def kept_run(tag, **env):
        process = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project,
                                   env={**os.environ, "RUN_TAG": tag, **env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        return process

    def line_of(process):
        code, output = finish(process)
        assert code == 0, output
        match = re.search(r"KEPT (.*)", output)
        assert match, output
        return dict(part.split("=", 1) for part in match.group(1).split()), output

    def schema_version():
        return session.execute("SELECT schema_version FROM system.local").one()[0]

    try:
        first, output = line_of(kept_run("first"))
        assert "kept_test_kept_N (kept between runs, leased per process cluster-wide" in output, output
        assert (first["keyspace"], first["adopted"]) == ("kept_test_kept_0", "False")
        before = schema_version()
        second, _ = line_of(kept_run("second"))
        assert (second["keyspace"], second["adopted"], second["rows"]) == ("kept_test_kept_0", "True", "0")
        assert second["owner_run"] == first["owner_run"]        # the first run's keyspace, not a new one
        assert schema_version() == before                       # no schema change at all: not even the
        tables = {row[0] for row in session.execute(            # create_table() of the same statement
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'kept_test_kept_0'")}
        assert tables == {"celery_astra_owner", "celery_results", "extra"}

        hold = tmp_path / "holding"
        killed = kept_run("killed", HOLD_FILE=str(hold))
        try:
            deadline = time.monotonic() + 120
            while not hold.exists():
                assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0]
                time.sleep(0.1)
            beside, _ = line_of(kept_run("beside"))             # slot 0 is held: another keyspace
            assert (beside["keyspace"], beside["adopted"]) == ("kept_test_kept_1", "False")
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.communicate(timeout=60)
        row = session.execute("SELECT holder, TTL(holder), state FROM kept_test_leases.slots WHERE slot = 0").one()
        assert row[0] is not None and 0 < row[1] <= 60 and row[2].startswith("busy "), row   # runs out by itself
        after, _ = line_of(kept_run("after"))                   # slot 1, handed on clean by "beside"
        assert (after["keyspace"], after["adopted"], after["rows"]) == ("kept_test_kept_1", "True", "0")
        rows = session.execute("SELECT COUNT(*) FROM kept_test_kept_0.celery_results").one()[0]
        assert rows >= 1                                          # the killed run's keyspace: not touched yet
        assert session.execute("SELECT id FROM team_data.orders").one().id == 7
    finally:
        for name in [row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")]:
            if name.startswith("kept_test"):
                session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


@pytest.mark.serial   # removes the kept containers that appeared during the test: another test's would go too
def test_two_concurrent_runs_with_container_reuse(project):
    import docker
    from cassandra.cluster import Cluster

    client = docker.from_env()
    label = "io.github.pytest-celery-astra.reuse=1"
    kept_before = {c.id for c in client.containers.list(all=True, sparse=True, filters={"label": label})}
    try:
        for attempt in range(2):   # the first pair may start the kept containers, the second reuses them
            first = start(project, f"a{attempt}", "-n", "2", "--celery-astra-reuse-containers", "true")
            second = start(project, f"b{attempt}", "-n", "2", "--celery-astra-reuse-containers", "true")
            (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
            assert code_a == 0, out_a
            assert code_b == 0, out_b
            # Each process returned its leased keyspace in the kept Cassandra: the next pair finds nothing to reap.
            assert "removed what killed earlier runs left" not in out_a + out_b, out_a + out_b
        kept = [c for c in client.containers.list(filters={"label": label}) if c.id not in kept_before]
        for container in kept:
            if container.labels.get("io.github.pytest-celery-astra.service") == "cassandra":
                # Only leased keyspaces stay (one per process that ran at once: 2 runs x 2 xdist workers).
                port = int(container.attrs["NetworkSettings"]["Ports"]["9042/tcp"][0]["HostPort"])
                cluster = Cluster(["127.0.0.1"], port=port)
                try:
                    names = sorted(cluster.connect().cluster.metadata.keyspaces)
                finally:
                    cluster.shutdown()
                ours = [name for name in names if name.startswith("celery_astra")]
                assert ours and all(re.fullmatch(r"celery_astra_kept_[0-9]+", name) for name in ours), names
                assert len(ours) <= 4, names
        # Two first runs at once may each start a kept RabbitMQ (neither found one to reuse): check all.
        rabbitmq = [c for c in kept if c.labels.get("io.github.pytest-celery-astra.service") == "rabbitmq"]
        assert rabbitmq, [c.labels for c in kept]
        for container in rabbitmq:
            vhosts = container.exec_run(["rabbitmqctl", "-q", "list_vhosts"]).output.decode().split()
            assert [v for v in vhosts if v.startswith("celery_astra")] == []   # each run deleted its own
    finally:
        for container in client.containers.list(all=True, filters={"label": label}):
            if container.id not in kept_before:
                container.remove(force=True, v=True)
        client.close()


# Both container brokers in one -n 8 run (each test once per broker kind), the memory broker in another.
@pytest.mark.parametrize("broker, passed", [(["--celery-astra-broker-kind", "rabbitmq,redis"], 24),
                                            (["--celery-astra-broker", "memory"], 12)], ids=["rabbitmq-redis", "memory"])
def test_eight_xdist_workers(project, broker, passed):
    code, output = finish(start(project, "n8", "-n", "8", *broker), timeout=600)
    assert code == 0, output
    assert re.search(rf"\b{passed} passed\b", output), output
