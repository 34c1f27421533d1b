"""The task of DataStax's "Celery with Astra DB" walkthrough, and one that writes the app's own table."""

from celery import Celery
from celery.signals import worker_process_init

app = Celery("tasks")
app.config_from_object("celeryconfig")


@app.task
def sortWords(text, capitalize):  # noqa: N802 - the walkthrough's name
    """Split ``text`` on spaces, sort the words case-insensitively, optionally upper-case them."""
    words = sorted(text.split(" "), key=str.lower)
    if capitalize:
        words = [word.upper() for word in words]
    return " ".join(words)


_session = None


def cassandra_session():
    """The app's own driver Session, made on first use from the app's cassandra_* settings
    (under pytest-celery-astra: the test Cassandra or Astra DB, and the test keyspace)."""
    global _session
    if _session is None:
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster

        conf = app.conf
        auth = PlainTextAuthProvider(**conf.cassandra_auth_kwargs) if conf.cassandra_auth_kwargs else None
        options = dict(conf.cassandra_options or {}, auth_provider=auth)
        if conf.cassandra_secure_bundle_path:
            cluster = Cluster(cloud={"secure_connect_bundle": conf.cassandra_secure_bundle_path}, **options)
        else:
            cluster = Cluster(conf.cassandra_servers, port=conf.cassandra_port, **options)
        _session = cluster.connect(conf.cassandra_keyspace)
    return _session


@app.task
def storeSortedWords(text):  # noqa: N802
    """Sort ``text`` and keep it in the app's own table ``sorted_words``."""
    sorted_text = sortWords(text, False)
    cassandra_session().execute(
        "INSERT INTO sorted_words (text, sorted) VALUES (%s, %s)", (text, sorted_text))
    return sorted_text


@worker_process_init.connect
def _new_session_after_fork(**_):
    global _session
    _session = None  # the next cassandra_session() connects in this child


@worker_process_init.connect
def _new_result_backend_session_after_fork(**_):
    backend = app.backend  # Celery's Cassandra backend keeps the Session its parent made
    backend._cluster = backend._session = None  # connect again, in this child
