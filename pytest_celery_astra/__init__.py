"""pytest-celery-astra: test Celery apps whose results live in Cassandra or Astra DB."""

from pytest_celery_astra.errors import (
    CeleryAstraError,
    ConfigurationError,
    DatabaseSetupError,
    EmbeddedWorkerError,
    ServiceStartError,
    TableNotOwnedError,
)

__all__ = [
    "CassandraTarget", "CeleryAstraError", "ConfigurationError", "DatabaseSetupError", "EmbeddedWorkerError",
    "Janitor", "ServiceStartError", "TableNotOwnedError", "TestDatabase",
]
__version__ = "0.1.0"

_LAZY = {"CassandraTarget": "cassandra.target", "TestDatabase": "cassandra.database", "Janitor": "cassandra.janitor"}


def __getattr__(name: str):
    # Imported on first use: a suite that never uses the plugin does not pay for them.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
