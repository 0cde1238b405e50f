"""One root error; small named subclasses carrying the resource they concern.

Retry loops test ``retriable``, never a list of types.  Messages name the table,
stream or shard, and never carry credentials.
"""

from __future__ import annotations


class ReplicatorError(Exception):
    retriable: bool = False

    def __init__(self, message: str, *, resource: str | None = None) -> None:
        super().__init__(message)
        self.resource = resource


class ConfigError(ReplicatorError):
    """A setting is invalid; the worker must not start."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}", resource=setting)
        self.setting = setting


class CodecError(ReplicatorError):
    """An item/record the codec cannot represent."""


class AwsError(ReplicatorError):
    """An AWS call failed; ``code`` is the service's error code."""

    def __init__(self, message: str, *, code: str = "", resource: str | None = None) -> None:
        super().__init__(message, resource=resource)
        self.code = code


class ThrottledError(AwsError):
    retriable = True


class TransientAwsError(AwsError):
    """5xx, timeouts, connection resets: retry with backoff."""

    retriable = True


class ExpiredIteratorError(AwsError):
    """Shard iterator older than 15 minutes: re-acquire from the checkpoint."""

    retriable = True


class TrimmedDataError(AwsError):
    """The checkpoint is behind the stream's trim horizon: data is gone, re-snapshot."""


class ResourceNotFoundError(AwsError):
    """Table, stream or shard does not exist (any more)."""


class AccessDeniedError(AwsError):
    """Permanent permission problem on one resource."""


class KafkaSendTimeout(ReplicatorError):
    """A send was not acknowledged within KAFKA_SEND_TIMEOUT: sent again."""

    retriable = True


class KafkaRefusedError(ReplicatorError):
    """Kafka refused a send for good (authorization, invalid topic, ...): the unit stops
    and its table pauses with the reason."""


class InternalTopicError(ReplicatorError):
    """An internal topic (control, state changelogs) cannot be created, or exists in a shape
    the worker cannot run on: the worker must not start.  ``resource`` is the topic."""


class SchemaRegistryUnavailable(ReplicatorError):
    """The Schema Registry did not answer (or answered 5xx/408/429): the send waits and is
    retried with backoff; nothing is sent without its schema id."""

    retriable = True
    retry_reason = "schema_registry"


class SchemaRegistryRefused(ReplicatorError):
    """The Schema Registry refused a schema for good (409 incompatible with the subject's
    registered versions, 422 invalid, 401/403 credentials): the table goes to ERROR."""
