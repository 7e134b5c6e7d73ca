"""Typed exceptions: one class per HTTP status family, carrying the server's code and message."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Type


class AquiferError(Exception):
    """Base class of every error this package raises."""


class ConnectionFailed(AquiferError):
    """The server could not be reached (after the retries), or the connection broke."""


class JobFailed(AquiferError):
    """A SQL job ended with status ``failed``; ``error`` is the server's message."""

    def __init__(self, job_id: str, error: str) -> None:
        super().__init__(f"SQL job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error


class JobTimeout(AquiferError):
    """A SQL job did not finish within the time the caller allowed (it may still run)."""

    def __init__(self, job_id: str, seconds: float) -> None:
        super().__init__(f"SQL job {job_id} did not finish within {seconds:g} s")
        self.job_id = job_id


class APIError(AquiferError):
    """The server answered with an error: ``{"error":{"code","message"[,"details"]}}``.

    Attributes:
        status: the HTTP status (0 for an error message on a WebSocket).
        code: the server's error code, e.g. ``invalid_records``, ``not_found``.
        message: the server's message.
        details: for ``invalid_records``, one entry per bad record and field
            (``record`` is the index within the request; ``input_record``, added by
            :meth:`Client.write`, the index within what was passed to it).
        retry_after: the ``Retry-After`` header in seconds, when the server sent one.
        written: for errors raised by a batched write, how many records earlier
            batches of the same call had already written.
    """

    status_family: int = 0

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Optional[List[Dict[str, Any]]] = None,
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: List[Dict[str, Any]] = list(details or [])
        self.retry_after = retry_after
        self.body = body
        self.written = 0


class BadRequest(APIError):
    """400: the request (or a record in it) is invalid; nothing was written."""

    status_family = 400


class Unauthorized(APIError):
    """401: no valid secret."""

    status_family = 401


class Forbidden(APIError):
    """403: the secret sees the thing but may not do this."""

    status_family = 403


class NotFound(APIError):
    """404: no such thing, or the secret may not see it."""

    status_family = 404


class MethodNotAllowed(APIError):
    status_family = 405


class Conflict(APIError):
    """409: already exists, or rows of an unfinished or failed job."""

    status_family = 409


class PayloadTooLarge(APIError):
    """413 (or 431): a body, batch, record or key over the server's limits."""

    status_family = 413


class UpgradeRequired(APIError):
    status_family = 426


class TooManyRequests(APIError):
    """429: over a quota or a rate limit; ``retry_after`` says when to come back."""

    status_family = 429


class ServerError(APIError):
    """5xx."""

    status_family = 500


class InternalError(ServerError):
    """500: internal, corruption or not supported."""

    status_family = 500


class Unavailable(ServerError):
    """503: a store is unreachable or the write path refuses writes; nothing was acknowledged."""

    status_family = 503


class GatewayTimeout(ServerError):
    """504: a write's ``wait=`` was not met in time; the write is durable and stays queued."""

    status_family = 504


_BY_STATUS: Dict[int, Type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    431: PayloadTooLarge,
    426: UpgradeRequired,
    429: TooManyRequests,
    500: InternalError,
    503: Unavailable,
    504: GatewayTimeout,
}

# Error codes of WebSocket error messages (no HTTP status) to the class of their status.
_BY_CODE: Dict[str, Type[APIError]] = {
    "invalid_argument": BadRequest,
    "invalid_records": BadRequest,
    "unauthenticated": Unauthorized,
    "permission_denied": Forbidden,
    "not_found": NotFound,
    "already_exists": Conflict,
    "failed_precondition": Conflict,
    "aborted": Conflict,
    "too_large": PayloadTooLarge,
    "resource_exhausted": TooManyRequests,
    "unavailable": Unavailable,
    "timeout": GatewayTimeout,
    "internal": InternalError,
    "corruption": InternalError,
    "not_supported": InternalError,
}


def error_class(status: int) -> Type[APIError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status < 600:
        return ServerError
    return APIError


def error_from_body(status: int, body: Any, retry_after: Optional[float] = None) -> APIError:
    """Builds the exception for an error answer (``body`` parsed JSON, or raw text)."""
    code, message, details = "http_error", "", None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        err = body["error"]
        code = str(err.get("code", code))
        message = str(err.get("message", ""))
        if isinstance(err.get("details"), list):
            details = err["details"]
    elif body:
        message = str(body)[:2000]
    if not message:
        message = f"HTTP {status}"
    return error_class(status)(status, code, message, details, retry_after, body)


def error_from_ws(error: Any) -> APIError:
    """The exception for a WebSocket ``{"type":"error","error":{...}}`` message."""
    err = error if isinstance(error, Mapping) else {}
    code = str(err.get("code", "error"))
    cls = _BY_CODE.get(code, APIError)
    return cls(0, code, str(err.get("message", "")), err.get("details"), None, error)
