"""Celery settings as in the walkthrough, read from the environment.

Under pytest the plugin replaces the broker and the Cassandra/Astra settings with
the test services; everything else here (serializers, UTC) is what the tests run with.
"""

import os

broker_url = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@localhost:5672//")
broker_connection_retry_on_startup = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
enable_utc = True

result_backend = "cassandra://"
cassandra_keyspace = os.environ.get("ASTRA_DB_KEYSPACE", "celeryks")
cassandra_table = "celery_tasks"
cassandra_read_consistency = "LOCAL_QUORUM"
cassandra_write_consistency = "LOCAL_QUORUM"
cassandra_auth_provider = "PlainTextAuthProvider"
cassandra_auth_kwargs = {
    "username": "token",
    "password": os.environ.get("ASTRA_DB_APPLICATION_TOKEN", ""),
}
cassandra_secure_bundle_path = os.environ.get("ASTRA_DB_SECURE_BUNDLE_PATH", "secure-connect-celery.zip")
