"""Exceptions the plugin raises. Their messages are for people: one sentence naming what to fix."""


class CeleryAstraError(Exception):
    """Base class of the plugin's errors."""


class ConfigurationError(CeleryAstraError):
    """A setting, the app or the broker URL is wrong; known before any service starts."""


class ServiceStartError(CeleryAstraError):
    """A broker or Cassandra container did not start or answer."""


class DatabaseSetupError(CeleryAstraError):
    """The test keyspace or result table could not be prepared."""


class TableNotOwnedError(CeleryAstraError):
    """Cleanup was asked to touch a table the plugin did not create."""


class EmbeddedWorkerError(CeleryAstraError):
    """The embedded Celery worker failed to start, died, or did not stop."""


class CleanupError(CeleryAstraError):
    """Emptying the plugin's tables after a test failed."""
