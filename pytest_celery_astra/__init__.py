"""pytest-celery-astra: test Celery apps whose results live in Cassandra or Astra DB."""

from .database import CassandraTarget, TestDatabase
from .errors import (
    CeleryAstraError, DatabaseSetupError, EmbeddedWorkerError, ServiceStartError, TableNotOwnedError,
)
from .janitor import Janitor

__all__ = [
    "CassandraTarget", "CeleryAstraError", "DatabaseSetupError", "EmbeddedWorkerError", "Janitor",
    "ServiceStartError", "TableNotOwnedError", "TestDatabase",
]
__version__ = "0.1.0"
