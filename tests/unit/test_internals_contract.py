"""The private names of Celery, kombu and cassandra-driver the plugin relies on (internals.py), checked
against the installed releases: the lowest and the latest nox sessions both run this, so an upstream change
fails here, by name, before it fails a fixture somewhere else."""

import logging
import threading

import pytest
from celery import Celery

from pytest_celery_astra import internals


@pytest.fixture
def app():
    app = Celery("contract", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.result_backend_thread_safe = True   # as the plugin sets it: Celery then caches one backend
    yield app
    app.close()


def test_the_app_attributes_exist_and_forgetting_the_backend_builds_a_new_one(app):
    assert all(hasattr(app, name) for name in internals.CELERY_APP_PRIVATE)
    first = app.backend
    assert internals.cached_backend(app) is first
    internals.forget_cached_backend(app)
    assert internals.cached_backend(app) is None
    assert app.backend is not first


def test_forgetting_pools_gives_a_new_pool_producer_pool_and_control(app):
    assert all(hasattr(app.amqp, name) for name in internals.CELERY_AMQP_PRIVATE)
    pool, control = app.pool, app.control
    app.amqp.producer_pool  # noqa: B018 - made, so that it is cached
    internals.close_app_pool(app)
    internals.forget_pools(app)
    assert app.amqp._producer_pool is None
    assert app.pool is not pool and app.control is not control


def test_closing_the_app_pool_drops_it_from_kombus_registry(app):
    from kombu import pools

    pool = app.pool
    assert any(value is pool for value in pools.connections.values())
    internals.close_app_pool(app)
    assert not any(value is pool for value in pools.connections.values())
    assert not any(getattr(value, "connections", None) is pool for value in pools.producers.values())


def test_forgetting_the_router_reads_task_routes_again(app):
    app.conf.task_routes = {"a.task": {"queue": "first"}}
    assert app.amqp.router.route({}, "a.task")["queue"].name == "first"
    app.conf.task_routes = {"a.task": {"queue": "second"}}
    internals.forget_router(app)
    assert app.amqp.router.route({}, "a.task")["queue"].name == "second"


def test_the_worker_consumer_and_test_controller_names_exist():
    from celery.contrib.testing.worker import TestWorkController
    from celery.worker import state
    from celery.worker.consumer import Consumer

    assert all(callable(getattr(Consumer, name, None)) for name in internals.CELERY_CONSUMER_PRIVATE)
    assert callable(Consumer.apply_eta_task)
    assert all(hasattr(state, name) for name in internals.WORKER_STATE_NAMES)
    # TestWorkController sets its event in __init__; the name is read from the source of that method.
    import inspect

    source = inspect.getsource(TestWorkController.__init__)
    assert all(f"self.{name} = threading.Event()" in source for name in internals.TEST_WORKER_PRIVATE)


def test_held_task_handlers_are_the_consumers_functions():
    from celery.worker.consumer import Consumer

    class Fake:
        apply_eta_task = Consumer.apply_eta_task
        _limit_post_eta = Consumer._limit_post_eta

    assert internals.held_task_handlers(Fake()) == (Consumer.apply_eta_task, Consumer._limit_post_eta)


def test_allow_joining_results_lifts_the_workers_block():
    from celery import result

    assert all(hasattr(result, name) for name in internals.CELERY_RESULT_PRIVATE)
    seen = []

    def in_a_thread():  # the flag is thread-local: a fresh thread, as the embedded worker's tests are
        result._set_task_join_will_block(True)
        internals.allow_joining_results()
        seen.append(result.task_join_will_block())

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [False]


def test_app_logging_is_set_up_again_after_an_earlier_setup(tmp_path):
    from celery import Celery
    from celery.app.log import Logging

    assert all(hasattr(Logging, name) for name in internals.CELERY_LOGGING_PRIVATE)
    app = Celery("logging_contract", set_as_current=False)
    Logging._setup = True   # as after any earlier setup in this process
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        internals.set_up_app_logging(app, "INFO", str(tmp_path / "worker.log"))
        logging.getLogger("celery.contract").info("into the file")
        assert "into the file" in (tmp_path / "worker.log").read_text()
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        Logging._setup = False


def test_the_cassandra_backend_and_driver_names_exist(app):
    from cassandra.cluster import Cluster, ExecutionProfile
    from celery.backends.cassandra import CassandraBackend

    app.conf.update(cassandra_servers=["127.0.0.1"], cassandra_keyspace="k", cassandra_table="t")
    backend = CassandraBackend(app=app)
    assert all(hasattr(backend, name) for name in internals.CELERY_BACKEND_PRIVATE)
    assert internals.backend_cluster(backend) is None          # not connected yet
    with_profiles = Cluster(["127.0.0.1"], execution_profiles={"default": ExecutionProfile()})
    legacy = Cluster(["127.0.0.1"])
    assert all(hasattr(with_profiles, name) for name in internals.DRIVER_CLUSTER_PRIVATE)
    assert internals.cluster_uses_profiles(with_profiles)
    assert not internals.cluster_uses_profiles(legacy)     # no profiles given: legacy session options


def test_a_private_name_that_is_gone_falls_back_to_what_celery_does_without_the_plugin():
    bare = type("App", (), {})()                     # no _backend_cache, _local, _pool, amqp
    internals.forget_cached_backend(bare)
    internals.forget_pools(bare)
    internals.close_app_pool(bare)
    assert internals.cached_backend(bare) is None

    class OnlyEta:
        def apply_eta_task(self, request):
            return request

    assert internals.held_task_handlers(OnlyEta()) == (OnlyEta.apply_eta_task,)
    assert internals.cluster_uses_profiles(object()) is True   # unknown: change the profile (harmless)
