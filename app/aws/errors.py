"""botocore exceptions -> app.domain.errors, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.domain import errors

_THROTTLE = {
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}
_BY_CODE: dict[str, type[errors.AwsError]] = {
    "ExpiredIteratorException": errors.ExpiredIteratorError,
    "TrimmedDataAccessException": errors.TrimmedDataError,
    "ResourceNotFoundException": errors.ResourceNotFoundError,
    "AccessDeniedException": errors.AccessDeniedError,
    "UnrecognizedClientException": errors.AccessDeniedError,
    "InternalServerError": errors.TransientAwsError,
    "ServiceUnavailable": errors.TransientAwsError,
    "RequestTimeout": errors.TransientAwsError,
}


def translate(exc: BaseException, operation: str, resource: str | None) -> errors.AwsError:
    """An AwsError for a botocore/aiohttp failure; messages name the resource, not creds."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        cls = errors.ThrottledError if code in _THROTTLE else _BY_CODE.get(code)
        if cls is None:
            cls = errors.TransientAwsError if status >= 500 else errors.AwsError
        msg = f"{operation} on {resource or '?'} failed: {code or status}: {err.get('Message', '')}"
        return cls(msg, code=code, resource=resource)
    # connection errors, timeouts, endpoint hiccups
    return errors.TransientAwsError(
        f"{operation} on {resource or '?'} failed: {type(exc).__name__}: {exc}",
        code=type(exc).__name__,
        resource=resource,
    )


@asynccontextmanager
async def aws_call(operation: str, resource: str | None = None) -> AsyncIterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
        raise translate(exc, operation, resource) from exc
    except Exception as exc:  # aiohttp client errors and friends
        if type(exc).__module__.startswith("aiohttp"):
            raise translate(exc, operation, resource) from exc
        raise
